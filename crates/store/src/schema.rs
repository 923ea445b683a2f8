// @generated automatically by Diesel CLI.

diesel::table! {
    calendars (user_id, id) {
        user_id -> Text,
        id -> Uuid,
        account_id -> Uuid,
        provider -> Text,
        provider_calendar_id -> Text,
        name_enc -> Bytea,
        color -> Nullable<Text>,
        time_zone -> Nullable<Text>,
        is_primary -> Bool,
        can_write -> Bool,
        mode -> Text,
        sync_status -> Text,
        sync_cursor -> Nullable<Text>,
        next_sync_at -> Nullable<Timestamptz>,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamptz>,
        consecutive_failures -> Int4,
        last_synced_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    connected_accounts (user_id, id) {
        user_id -> Text,
        id -> Uuid,
        provider -> Text,
        external_account_id -> Text,
        display_name_enc -> Nullable<Bytea>,
        status -> Text,
        status_reason -> Nullable<Text>,
        credentials_enc -> Nullable<Bytea>,
        scopes -> Array<Nullable<Text>>,
        server_url -> Nullable<Text>,
        connected_at -> Timestamptz,
        last_sync_at -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        revoked_at -> Nullable<Timestamptz>,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notification_settings (user_id, provider) {
        user_id -> Text,
        provider -> Text,
        push -> Bool,
        email -> Bool,
        sms -> Bool,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    push_channels (user_id, calendar_id) {
        user_id -> Text,
        calendar_id -> Uuid,
        account_id -> Uuid,
        provider -> Text,
        channel_id -> Text,
        resource_id -> Nullable<Text>,
        secret_hash -> Bytea,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    user_calendar_events (user_id, id) {
        user_id -> Text,
        id -> Uuid,
        calendar_id -> Uuid,
        provider -> Text,
        external_id -> Text,
        ical_uid -> Nullable<Text>,
        series_id -> Nullable<Text>,
        instance_start -> Nullable<Timestamptz>,
        start_at -> Timestamptz,
        end_at -> Timestamptz,
        time_zone -> Nullable<Text>,
        all_day_start -> Nullable<Date>,
        all_day_end -> Nullable<Date>,
        status -> Text,
        transparency -> Text,
        self_response -> Text,
        kind -> Text,
        reminders -> Jsonb,
        etag -> Nullable<Text>,
        provider_updated_at -> Nullable<Timestamptz>,
        title_enc -> Nullable<Bytea>,
        location_enc -> Nullable<Bytea>,
        description_enc -> Nullable<Bytea>,
        attendees_enc -> Nullable<Bytea>,
        synced_at -> Timestamptz,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        reminder_first_due -> Nullable<Timestamptz>,
        reminder_last_due -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    oauth_states (user_id, state_hash) {
        user_id -> Text,
        state_hash -> Bytea,
        provider -> Text,
        redirect_uri -> Text,
        pkce_verifier_enc -> Bytea,
        scopes -> Array<Nullable<Text>>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    user_data_keys (user_id, version) {
        user_id -> Text,
        version -> Int4,
        master_version -> Int4,
        wrapped_key -> Bytea,
        created_at -> Timestamptz,
        rotated_at -> Nullable<Timestamptz>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    calendars,
    connected_accounts,
    notification_settings,
    oauth_states,
    push_channels,
    user_calendar_events,
    user_data_keys,
);
