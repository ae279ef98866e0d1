// One schema for both backends: only types SQLite and PostgreSQL share
// (Text, Integer, Bool, Timestamp) so every query compiles for both.

diesel::table! {
    collections (id) {
        id -> Text,
        name -> Text,
        description -> Text,
        created_at -> Timestamp,
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

diesel::joinable!(documents -> collections (collection_id));
diesel::joinable!(chunks -> documents (document_id));
diesel::allow_tables_to_appear_in_same_query!(collections, documents, chunks);
