//! Typed ids, shared by the relational store and the search indexes, so a
//! chunk id cannot be passed where a collection id belongs. Each is the id's
//! text (a UUID in its hyphenated form, as the database stores it); in JSON
//! it is that plain string.

use uuid::Uuid;

/// Declare id newtypes over their text. Each gets `random()`, `as_str()`,
/// `to_uuid()`, `Deref<Target = str>` (so `&id` goes where `&str` does),
/// `Display`, comparisons with strings, transparent serde and the diesel
/// conversions for `Text` columns.
macro_rules! ids {
    ($( $(#[$meta:meta])* $name:ident; )+) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
            diesel::AsExpression, diesel::FromSqlRow,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = diesel::sql_types::Text)]
        pub struct $name(String);

        impl $name {
            /// A new random (v4) id.
            pub fn random() -> Self {
                Self(Uuid::new_v4().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// The id as a UUID; None for text that is not one.
            pub fn to_uuid(&self) -> Option<Uuid> {
                Uuid::parse_str(&self.0).ok()
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_string())
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(
                    &self.0, out,
                )
            }
        }

        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(
                    bytes,
                )
                .map(Self)
            }
        }
    )+};
}

ids! {
    /// A collection (`collections.id`).
    CollectionId;
    /// A document (`documents.id`), derived from its collection and source.
    DocumentId;
    /// A chunk of a document (`chunks.id`); also the point id in the vector
    /// index and the key in the lexical index.
    ChunkId;
    /// A user account (`users.id`).
    UserId;
    /// A background job (`jobs.id`).
    JobId;
    /// A conversation (`conversations.id`).
    ConversationId;
    /// A message of a conversation (`messages.id`).
    MessageId;
    /// An API key (`api_keys.id`).
    ApiKeyId;
    /// A login session (`sessions.id`).
    SessionId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_json_and_back() {
        let id = ChunkId::random();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        assert_eq!(
            id.to_uuid().map(|u| u.to_string()).as_deref(),
            Some(id.as_str())
        );
        assert_eq!(CollectionId::from("x").to_uuid(), None);
    }
}
