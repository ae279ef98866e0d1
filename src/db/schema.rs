// One schema for both backends: only types SQLite and PostgreSQL share
// (Text, Integer, BigInt, Bool, Timestamp) so every query compiles for both.

diesel::table! {
    collections (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        created_at -> Timestamp,
        public -> Bool,
        generation -> BigInt,
        log_position -> BigInt,
        retrieval -> Nullable<Text>,
    }
}

diesel::table! {
    documents (id) {
        id -> Text,
        collection_id -> Text,
        source -> Text,
        title -> Text,
        content -> Text,
        content_hash -> Text,
        metadata -> Text,
        chunk_count -> Integer,
        indexed -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    chunks (id) {
        id -> Text,
        document_id -> Text,
        collection_id -> Text,
        position -> Integer,
        text -> Text,
        content_hash -> Text,
        char_start -> Integer,
        char_end -> Integer,
        token_count -> Integer,
    }
}

diesel::table! {
    users (id) {
        id -> Text,
        username -> Text,
        email -> Nullable<Text>,
        password_hash -> Text,
        role -> Text,
        disabled -> Bool,
        token_version -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Text,
        user_id -> Text,
        name -> Text,
        prefix -> Text,
        key_hash -> Text,
        scopes -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    ws_tickets (ticket_hash) {
        ticket_hash -> Text,
        user_id -> Text,
        session_id -> Nullable<Text>,
        api_key_id -> Nullable<Text>,
        token_version -> Integer,
        credential_expires_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    collection_grants (collection_id, user_id) {
        collection_id -> Text,
        user_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    conversations (id) {
        id -> Text,
        user_id -> Text,
        title -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        conversation_id -> Text,
        role -> Text,
        content -> Text,
        metadata -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    document_signatures (document_id) {
        document_id -> Text,
        collection_id -> Text,
        source -> Text,
        text_hash -> Text,
        minhash -> Text,
    }
}

diesel::joinable!(documents -> collections (collection_id));
diesel::joinable!(chunks -> documents (document_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));
diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(collection_grants -> users (user_id));
diesel::joinable!(collection_grants -> collections (collection_id));
diesel::joinable!(conversations -> users (user_id));
diesel::joinable!(messages -> conversations (conversation_id));
diesel::allow_tables_to_appear_in_same_query!(
    collections,
    documents,
    document_signatures,
    chunks,
    users,
    sessions,
    refresh_tokens,
    api_keys,
    collection_grants,
    conversations,
    messages,
);

diesel::table! {
    jobs (id) {
        id -> Text,
        kind -> Text,
        collection_id -> Nullable<Text>,
        created_by -> Nullable<Text>,
        state -> Text,
        payload -> Text,
        result -> Nullable<Text>,
        progress -> Text,
        attempts -> Integer,
        max_attempts -> Integer,
        run_after -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        cancel_requested -> Bool,
        dedupe_key -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(jobs -> collections (collection_id));
diesel::joinable!(jobs -> users (created_by));
// Separate calls: listing `collections` and `users` together again would
// repeat the pair the call above already declares.
diesel::allow_tables_to_appear_in_same_query!(jobs, collections);
diesel::allow_tables_to_appear_in_same_query!(jobs, users);

diesel::table! {
    lexical_log (pos) {
        pos -> BigInt,
        chunk_id -> Text,
        op -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    lexical_log_head (id) {
        id -> Integer,
        log_id -> Text,
        pos -> BigInt,
    }
}
