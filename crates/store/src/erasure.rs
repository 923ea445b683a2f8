//! GDPR erasure (AC-08): every row about one user goes in one transaction,
//! their data keys with it (crypto-shredding: ciphertext of theirs left
//! anywhere else can no longer be opened), and the audit trail keeps a
//! single entry recording the erasure, holding only the pseudonymous id.
//!
//! Revoking the user's grants at the providers needs their tokens, so the
//! caller does it before calling [`erase_user`].

use diesel::QueryableByName;
use diesel::sql_query;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl};
use juy_domain::UserId;

use crate::StoreError;

/// What an erasure deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErasureReport {
    /// Events.
    pub events: u64,
    /// Calendars.
    pub calendars: u64,
    /// Connections.
    pub connections: u64,
    /// Meetings the user organised.
    pub meetings: u64,
    /// Other users' meetings the user was removed from as an invitee.
    pub invitations: u64,
    /// Data keys destroyed.
    pub keys: u64,
    /// Audit entries by or about the user (the erasure's own entry is then added).
    pub audit_events: u64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The tables holding a user's rows under `user_id`, children before parents,
/// with whether the report counts them. Every user-owned table must be here:
/// the erasure test scans the whole database for the user afterwards.
const USER_TABLES: &[&str] = &[
    "sync_job_calendars",
    "sync_jobs",
    "push_channels",
    "meetings",
    "reminder_deliveries",
    "user_calendar_events",
    "calendars",
    "connected_accounts",
    "notification_settings",
    "availability_settings",
    "oauth_states",
    "user_data_keys",
    // Last: deleting events and meetings above marks the user's busy time
    // as changed (triggers), and those marks go too.
    "busy_blocks",
    "busy_state",
    "busy_dirty",
];

async fn delete_rows(conn: &mut AsyncPgConnection, table: &str, user: &str) -> Result<u64, StoreError> {
    // `table` comes from USER_TABLES, never from input.
    let deleted = sql_query(format!("DELETE FROM {table} WHERE user_id = $1"))
        .bind::<Text, _>(user)
        .execute(conn)
        .await?;
    Ok(deleted as u64)
}

/// Deletes every row about `user`, destroys their data keys and erases their
/// audit entries (recording the erasure), all or nothing. Erasing a user the
/// service holds nothing about deletes nothing and still records the erasure.
pub async fn erase_user(
    conn: &mut AsyncPgConnection,
    user: &UserId,
    request_id: Option<&str>,
) -> Result<ErasureReport, StoreError> {
    let user = user.as_str();
    conn.transaction(async |conn| {
        {
            let mut report = ErasureReport::default();
            // A busy-block rebuild in flight finishes first; none starts
            // for this user afterwards (nothing is left marked).
            crate::busy_blocks::lock_user(conn, user).await?;
            for table in USER_TABLES {
                let deleted = delete_rows(conn, table, user).await?;
                match *table {
                    "user_calendar_events" => report.events = deleted,
                    "calendars" => report.calendars = deleted,
                    "connected_accounts" => report.connections = deleted,
                    "meetings" => report.meetings = deleted,
                    "user_data_keys" => report.keys = deleted,
                    _ => {}
                }
            }
            // Other organisers' meetings keep their invitations minus this user.
            report.invitations =
                sql_query("UPDATE meetings SET invitees = array_remove(invitees, $1) WHERE $1 = ANY (invitees)")
                    .bind::<Text, _>(user)
                    .execute(conn)
                    .await? as u64;
            let erased: Vec<Count> = sql_query("SELECT audit_erase_user($1, $2) AS n")
                .bind::<Text, _>(user)
                .bind::<Nullable<Text>, _>(request_id)
                .load(conn)
                .await?;
            report.audit_events = erased.into_iter().next().map_or(0, |c| u64::try_from(c.n).unwrap_or(0));
            Ok(report)
        }
    })
    .await
}
