//! The administrators' reads beyond the connection list: the audit trail
//! (paged, or whole as a stream for CSV), the connection export (a stream of
//! batches, for gRPC streaming and the CSV download) and the RFC 4180 CSV
//! rendering both downloads share.

use chrono::{DateTime, Utc};
use futures::Stream;

use juy_domain::UserId;
use juy_store::audit::{self, AuditEvent, AuditFilter};

use crate::auth::Caller;
use crate::error::{ApiError, FieldViolation};
use crate::paging::{self, Page};
use crate::service::{AdminConnection, AdminListInput, CalendarService};

/// How many rows one batch of an export holds.
pub const EXPORT_BATCH: i32 = 500;

/// The longest action filter accepted.
const MAX_FILTER_LEN: usize = 256;

/// A request for audit entries; empty strings and `None` do not filter.
#[derive(Debug, Clone, Default)]
pub struct AuditListInput {
    /// Entries by this actor.
    pub actor: String,
    /// Entries by or about this user.
    pub user_id: String,
    /// This action or the actions under it.
    pub action: String,
    /// Recorded at or after.
    pub start_time: Option<DateTime<Utc>>,
    /// Recorded before.
    pub end_time: Option<DateTime<Utc>>,
    /// Page size (0: the default).
    pub page_size: i32,
    /// The previous page's `next_page_token`.
    pub page_token: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AuditToken {
    s: i64,
}

/// A checked audit query: the store filter and the paging fingerprint.
struct AuditQuery {
    filter: AuditFilter,
    fingerprint: u64,
}

fn audit_query(input: &AuditListInput) -> Result<AuditQuery, ApiError> {
    let mut violations = Vec::new();
    let mut violation = |field: &str, description: String| {
        violations.push(FieldViolation {
            field: field.into(),
            description,
        });
    };
    let user = if input.user_id.is_empty() {
        None
    } else {
        match UserId::new(input.user_id.clone()) {
            Ok(user) => Some(user),
            Err(e) => {
                violation("user_id", e.to_string());
                None
            }
        }
    };
    if input.actor.len() > MAX_FILTER_LEN || input.actor.chars().any(char::is_control) {
        violation(
            "actor",
            format!("must be a user id or system/{{component}} of at most {MAX_FILTER_LEN} characters"),
        );
    }
    if input.action.len() > MAX_FILTER_LEN
        || !input
            .action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_')
    {
        violation(
            "action",
            "must be an action or its leading words, e.g. `connection` or `connection.revoke`".into(),
        );
    }
    if let (Some(start), Some(end)) = (input.start_time, input.end_time)
        && end <= start
    {
        violation("end_time", "must be after start_time".into());
    }
    if !violations.is_empty() {
        return Err(ApiError::invalid_fields(violations));
    }
    let fingerprint = paging::fingerprint(&[
        &input.actor,
        &input.user_id,
        &input.action,
        &input.start_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
        &input.end_time.map(|t| t.to_rfc3339()).unwrap_or_default(),
    ]);
    Ok(AuditQuery {
        filter: AuditFilter {
            actor: (!input.actor.is_empty()).then(|| input.actor.clone()),
            user,
            action: (!input.action.is_empty()).then(|| input.action.clone()),
            since: input.start_time,
            until: input.end_time,
            before_seq: None,
        },
        fingerprint,
    })
}

impl CalendarService {
    /// `Admin.ListAuditEvents`: one page of entries, newest first.
    pub async fn list_audit_events(
        &self,
        caller: &Caller,
        input: AuditListInput,
    ) -> Result<Page<AuditEvent>, ApiError> {
        let size = paging::page_size(input.page_size)?;
        let mut query = audit_query(&input)?;
        if let Some(user) = &query.filter.user {
            caller.audit.subject(user.clone());
        }
        query.filter.before_seq =
            paging::decode_token::<AuditToken>(&input.page_token, query.fingerprint)?.map(|t| t.s);
        let mut conn = self.store().conn().await?;
        let mut items = audit::list(&mut conn, &query.filter, size as i64 + 1).await?;
        let next_page_token = if items.len() > size {
            items.truncate(size);
            items
                .last()
                .map(|e| paging::encode_token(query.fingerprint, &AuditToken { s: e.seq }))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Page { items, next_page_token })
    }

    /// Every entry matching `input`'s filters (its paging fields are
    /// ignored), newest first, in batches: for the CSV download. The filters
    /// are checked before the stream starts.
    pub fn audit_events_stream(
        &self,
        caller: &Caller,
        input: &AuditListInput,
    ) -> Result<impl Stream<Item = Result<Vec<AuditEvent>, ApiError>> + Send + 'static, ApiError> {
        let query = audit_query(input)?;
        if let Some(user) = &query.filter.user {
            caller.audit.subject(user.clone());
        }
        let store = self.store().clone();
        Ok(futures::stream::try_unfold(
            (Some(query.filter), store),
            |(filter, store)| async move {
                let Some(mut filter) = filter else {
                    return Ok(None);
                };
                let mut conn = store.conn().await?;
                let batch = audit::list(&mut conn, &filter, i64::from(EXPORT_BATCH)).await?;
                drop(conn);
                if batch.is_empty() {
                    return Ok(None);
                }
                let next = if batch.len() < EXPORT_BATCH as usize {
                    None
                } else {
                    filter.before_seq = batch.last().map(|e| e.seq);
                    Some(filter)
                };
                Ok::<_, ApiError>(Some((batch, (next, store))))
            },
        ))
    }

    /// `Admin.ExportConnections` and the CSV download: every connection
    /// matching the filters (paging fields ignored), oldest first, in
    /// batches. The filters are checked (and the first batch read) before the
    /// stream starts, so a bad filter is an error, not an empty download.
    pub async fn export_connections(
        &self,
        caller: &Caller,
        input: AdminListInput,
    ) -> Result<impl Stream<Item = Result<Vec<AdminConnection>, ApiError>> + Send + 'static, ApiError> {
        let input = AdminListInput {
            page_size: EXPORT_BATCH,
            page_token: String::new(),
            ..input
        };
        let first = self.admin_list_connections(caller, input.clone()).await?;
        let service = self.clone();
        let caller = caller.clone();
        Ok(futures::stream::try_unfold(
            Some((first, service, caller, input)),
            |state| async move {
                let Some((page, service, caller, input)) = state else {
                    return Ok(None);
                };
                let next = if page.next_page_token.is_empty() {
                    None
                } else {
                    let input = AdminListInput {
                        page_token: page.next_page_token.clone(),
                        ..input
                    };
                    let following = service.admin_list_connections(&caller, input.clone()).await?;
                    Some((following, service, caller, input))
                };
                if page.items.is_empty() && next.is_none() {
                    return Ok(None);
                }
                Ok::<_, ApiError>(Some((page.items, next)))
            },
        ))
    }
}

/// One CSV record (RFC 4180): fields joined by commas, a field quoted when it
/// holds a comma, a quote, CR or LF (quotes doubled), ended by CRLF.
pub fn csv_record<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut line = String::new();
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push_str("\r\n");
    line
}

/// The columns of `connections.csv`.
pub const CONNECTION_COLUMNS: &[&str] = &[
    "user_id",
    "connection",
    "provider",
    "state",
    "state_reason",
    "connect_time",
    "last_sync_time",
    "last_error",
    "calendar_count",
    "calendars_in_error",
];

/// One connection as a CSV record.
pub fn connection_record(c: &AdminConnection) -> String {
    let row = &c.row;
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    let in_error = c
        .calendars
        .iter()
        .filter(|cal| cal.health.sync_status == juy_domain::SyncStatus::Error)
        .count()
        .to_string();
    let fields = [
        row.user_id.as_str().to_owned(),
        crate::names::connection(row.account_id),
        row.provider.as_str().to_owned(),
        row.status.as_str().to_owned(),
        row.status_reason.clone().unwrap_or_default(),
        time(Some(row.connected_at)).unwrap_or_default(),
        time(row.last_sync_at).unwrap_or_default(),
        row.last_error.clone().unwrap_or_default(),
        row.calendar_count.to_string(),
        in_error,
    ];
    csv_record(fields.iter().map(String::as_str))
}

/// The columns of `audit-events.csv`.
pub const AUDIT_COLUMNS: &[&str] = &[
    "time",
    "actor",
    "actor_roles",
    "action",
    "subject_user_id",
    "target",
    "result",
    "request_id",
    "name",
];

/// One audit entry as a CSV record (roles joined by spaces).
pub fn audit_record(e: &AuditEvent) -> String {
    let fields = [
        e.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        e.actor.clone(),
        e.actor_roles.join(" "),
        e.action.clone(),
        e.subject_user_id.clone().unwrap_or_default(),
        e.target.clone().unwrap_or_default(),
        e.result.clone(),
        e.request_id.clone().unwrap_or_default(),
        format!("auditEvents/{}", e.id),
    ];
    csv_record(fields.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it_and_doubles_quotes() {
        assert_eq!(csv_record(["a", "b c", ""]), "a,b c,\r\n");
        assert_eq!(
            csv_record(["Müller, Jo", "say \"hi\"", "two\nlines", "cr\rhere"]),
            "\"Müller, Jo\",\"say \"\"hi\"\"\",\"two\nlines\",\"cr\rhere\"\r\n"
        );
    }

    #[test]
    fn audit_filters_are_checked_and_named() {
        let bad = AuditListInput {
            action: "Connection.Revoke".into(),
            start_time: Some(Utc::now()),
            end_time: Some(Utc::now() - chrono::Duration::hours(1)),
            ..Default::default()
        };
        let Err(error) = audit_query(&bad) else {
            panic!("accepted a bad filter");
        };
        let fields: Vec<&str> = error.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["action", "end_time"]);
    }
}
