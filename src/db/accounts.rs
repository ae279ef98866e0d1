//! Users, sessions (login families of refresh tokens), API keys, and the
//! grants that let a user read a collection that is not public.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{
    api_keys, collection_grants, collections, refresh_tokens, sessions, users, ws_tickets,
};
use super::{is_unique_violation, now, Cursor, Db, DbError, DbResult};
use crate::db_run;
use crate::ids::{ApiKeyId, SessionId, UserId};

crate::text_enum! {
    /// What a user may do: admins manage users and every collection.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Role ("role") {
        Admin = "admin",
        User = "user",
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub role: Role,
    pub disabled: bool,
    pub token_version: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: NaiveDateTime,
    pub revoked_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    pub token_hash: String,
    pub session_id: SessionId,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub used_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub key_hash: String,
    /// Comma-separated scope names.
    pub scopes: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

/// A single-use WebSocket ticket and the credential it stands for: a session
/// (with the token version and access-token expiry it was issued under) or an
/// API key.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = ws_tickets)]
pub struct WsTicket {
    pub ticket_hash: String,
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub api_key_id: Option<ApiKeyId>,
    pub token_version: i32,
    pub credential_expires_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Insert a user; `Ok(None)` when the username is taken.
pub async fn create_user(db: &Db, user: User) -> DbResult<Option<User>> {
    let result = db_run!(db, conn => {
        diesel::insert_into(users::table)
            .values(&user)
            .execute(conn)
            .await
            .map_err(DbError::from)
    });
    match result {
        Ok(_) => Ok(Some(user)),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn user_by_id(db: &Db, id: &str) -> DbResult<Option<User>> {
    db_run!(db, conn => {
        Ok(users::table
            .find(id)
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn user_by_username(db: &Db, username: &str) -> DbResult<Option<User>> {
    db_run!(db, conn => {
        Ok(users::table
            .filter(users::username.eq(username))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn user_by_email(db: &Db, email: &str) -> DbResult<Option<User>> {
    db_run!(db, conn => {
        Ok(users::table
            .filter(users::email.eq(email))
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Users oldest first, `limit` after `after`.
pub async fn list_users(db: &Db, after: Option<Cursor>, limit: i64) -> DbResult<Vec<User>> {
    db_run!(db, conn => {
        let mut q = users::table.select(User::as_select()).into_boxed();
        if let Some((ts, id)) = &after {
            q = q.filter(
                users::created_at
                    .gt(*ts)
                    .or(users::created_at.eq(*ts).and(users::id.gt(id.clone()))),
            );
        }
        Ok(q.order((users::created_at.asc(), users::id.asc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// Change role and/or the disabled flag. Disabling bumps the token version
/// and revokes every session, so nothing the user holds keeps working.
pub async fn update_user(
    db: &Db,
    id: &str,
    role: Option<Role>,
    disabled: Option<bool>,
) -> DbResult<Option<User>> {
    let id = id.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let t = now();
            if let Some(role) = role {
                diesel::update(users::table.find(&id))
                    .set((users::role.eq(role), users::updated_at.eq(t)))
                    .execute(conn)
                    .await?;
            }
            if disabled == Some(false) {
                diesel::update(users::table.find(&id))
                    .set((users::disabled.eq(false), users::updated_at.eq(t)))
                    .execute(conn)
                    .await?;
            }
            if disabled == Some(true) {
                diesel::update(users::table.find(&id))
                    .set((
                        users::disabled.eq(true),
                        users::token_version.eq(users::token_version + 1),
                        users::updated_at.eq(t),
                    ))
                    .execute(conn)
                    .await?;
                diesel::update(
                    sessions::table
                        .filter(sessions::user_id.eq(&id))
                        .filter(sessions::revoked_at.is_null()),
                )
                .set(sessions::revoked_at.eq(Some(t)))
                .execute(conn)
                .await?;
            }
            Ok(users::table
                .find(&id)
                .select(User::as_select())
                .first(conn)
                .await
                .optional()?)
        })
        .await
    })
}

/// New password hash; every session and access token of the user ends.
pub async fn set_password(db: &Db, id: &str, password_hash: &str) -> DbResult<()> {
    let id = id.to_string();
    let password_hash = password_hash.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let t = now();
            diesel::update(users::table.find(&id))
                .set((
                    users::password_hash.eq(&password_hash),
                    users::token_version.eq(users::token_version + 1),
                    users::updated_at.eq(t),
                ))
                .execute(conn)
                .await?;
            diesel::update(
                sessions::table
                    .filter(sessions::user_id.eq(&id))
                    .filter(sessions::revoked_at.is_null()),
            )
            .set(sessions::revoked_at.eq(Some(t)))
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
    })
}

/// Start a session with its first refresh token.
pub async fn create_session(
    db: &Db,
    user_id: &str,
    refresh_hash: &str,
    expires_at: NaiveDateTime,
) -> DbResult<Session> {
    let t = now();
    let session = Session {
        id: SessionId::random(),
        user_id: user_id.into(),
        created_at: t,
        revoked_at: None,
    };
    let token = RefreshToken {
        token_hash: refresh_hash.to_string(),
        session_id: session.id.clone(),
        created_at: t,
        expires_at,
        used_at: None,
    };
    let s = session.clone();
    db_run!(db, conn => {
        let s = s.clone();
        let token = token.clone();
        conn.transaction::<_, DbError, _>(async move |conn| {
            diesel::insert_into(sessions::table)
                .values(&s)
                .execute(conn)
                .await?;
            diesel::insert_into(refresh_tokens::table)
                .values(&token)
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    })?;
    Ok(session)
}

/// The user behind a live (not revoked) session.
pub async fn session_user(db: &Db, session_id: &str) -> DbResult<Option<User>> {
    db_run!(db, conn => {
        Ok(sessions::table
            .inner_join(users::table)
            .filter(sessions::id.eq(session_id))
            .filter(sessions::revoked_at.is_null())
            .select(User::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

#[derive(Debug, PartialEq)]
pub enum RefreshOutcome {
    /// Rotated: the old token is spent, the new one stored.
    Rotated { user: User, session_id: SessionId },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already spent: the session has now been revoked.
    Reused,
}

/// Spend `old_hash` and store `new_hash` in its place, in one transaction.
/// The spend is the transaction's first statement and a conditional update:
/// of two concurrent uses exactly one wins (the other waits for the row or
/// SQLite's write lock, then sees it spent and counts as reuse), and SQLite
/// never has to upgrade a read snapshot to a write.
pub async fn rotate_refresh(
    db: &Db,
    old_hash: &str,
    new_hash: &str,
    new_expires_at: NaiveDateTime,
) -> DbResult<RefreshOutcome> {
    let old_hash = old_hash.to_string();
    let new_hash = new_hash.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let t = now();
            let spent = diesel::update(
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(&old_hash))
                    .filter(refresh_tokens::used_at.is_null())
                    .filter(refresh_tokens::expires_at.gt(t)),
            )
            .set(refresh_tokens::used_at.eq(Some(t)))
            .execute(conn)
            .await?;
            let found: Option<(RefreshToken, Session)> = refresh_tokens::table
                .inner_join(sessions::table)
                .filter(refresh_tokens::token_hash.eq(&old_hash))
                .select((RefreshToken::as_select(), Session::as_select()))
                .first(conn)
                .await
                .optional()?;
            let Some((token, session)) = found else {
                return Ok(RefreshOutcome::Invalid);
            };
            if session.revoked_at.is_some() {
                return Ok(RefreshOutcome::Invalid);
            }
            if spent == 0 {
                if token.used_at.is_none() {
                    // Not spent, so it was expired.
                    return Ok(RefreshOutcome::Invalid);
                }
                diesel::update(sessions::table.find(&session.id))
                    .set(sessions::revoked_at.eq(Some(t)))
                    .execute(conn)
                    .await?;
                return Ok(RefreshOutcome::Reused);
            }
            let user: User = users::table
                .find(&session.user_id)
                .select(User::as_select())
                .first(conn)
                .await?;
            if user.disabled {
                return Ok(RefreshOutcome::Invalid);
            }
            diesel::insert_into(refresh_tokens::table)
                .values(&RefreshToken {
                    token_hash: new_hash.clone(),
                    session_id: session.id.clone(),
                    created_at: t,
                    expires_at: new_expires_at,
                    used_at: None,
                })
                .execute(conn)
                .await?;
            Ok(RefreshOutcome::Rotated {
                user,
                session_id: session.id,
            })
        })
        .await
    })
}

/// Revoke the session a refresh token belongs to (logout). Unknown tokens are
/// ignored.
pub async fn revoke_session_of_refresh(db: &Db, refresh_hash: &str) -> DbResult<()> {
    db_run!(db, conn => {
        let session_id: Option<SessionId> = refresh_tokens::table
            .filter(refresh_tokens::token_hash.eq(refresh_hash))
            .select(refresh_tokens::session_id)
            .first(conn)
            .await
            .optional()?;
        if let Some(id) = session_id {
            diesel::update(
                sessions::table
                    .find(&id)
                    .filter(sessions::revoked_at.is_null()),
            )
            .set(sessions::revoked_at.eq(Some(now())))
            .execute(conn)
            .await?;
        }
        Ok(())
    })
}

pub async fn create_api_key(db: &Db, key: ApiKey) -> DbResult<ApiKey> {
    db_run!(db, conn => {
        diesel::insert_into(api_keys::table)
            .values(&key)
            .execute(conn)
            .await?;
        Ok::<(), DbError>(())
    })?;
    Ok(key)
}

/// A user's keys that are not revoked, newest first.
pub async fn list_api_keys(db: &Db, user_id: &str) -> DbResult<Vec<ApiKey>> {
    db_run!(db, conn => {
        Ok(api_keys::table
            .filter(api_keys::user_id.eq(user_id))
            .filter(api_keys::revoked_at.is_null())
            .order((api_keys::created_at.desc(), api_keys::id.desc()))
            .select(ApiKey::as_select())
            .load(conn)
            .await?)
    })
}

/// Revoke one of the user's keys; false when the user has no such live key.
pub async fn revoke_api_key(db: &Db, user_id: &str, id: &str) -> DbResult<bool> {
    db_run!(db, conn => {
        let n = diesel::update(
            api_keys::table
                .filter(api_keys::id.eq(id))
                .filter(api_keys::user_id.eq(user_id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(Some(now())))
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// How a key is found: by the hash of the secret a client presents, or by
/// id (a key presented before, checked again).
#[derive(Debug, Clone, Copy)]
pub enum KeyLookup<'a> {
    Hash(&'a str),
    Id(&'a str),
}

/// A live key, with its owner.
pub async fn api_key_with_user(db: &Db, by: KeyLookup<'_>) -> DbResult<Option<(ApiKey, User)>> {
    db_run!(db, conn => {
        let q = api_keys::table
            .inner_join(users::table)
            .filter(api_keys::revoked_at.is_null())
            .select((ApiKey::as_select(), User::as_select()))
            .into_boxed();
        let q = match by {
            KeyLookup::Hash(hash) => q.filter(api_keys::key_hash.eq(hash)),
            KeyLookup::Id(id) => q.filter(api_keys::id.eq(id)),
        };
        Ok(q.first(conn).await.optional()?)
    })
}

/// Store a new ticket, sweeping expired ones first: issuing is the only
/// thing that makes the table grow, so it also keeps it small.
pub async fn create_ws_ticket(db: &Db, ticket: &WsTicket) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::delete(ws_tickets::table.filter(ws_tickets::expires_at.le(now())))
            .execute(conn)
            .await?;
        diesel::insert_into(ws_tickets::table)
            .values(ticket)
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Spend a ticket: delete it and return what it was, expired or not. A single
/// `DELETE … RETURNING`, so of two concurrent uses exactly one gets the row.
pub async fn take_ws_ticket(db: &Db, ticket_hash: &str) -> DbResult<Option<WsTicket>> {
    db_run!(db, conn => {
        Ok(diesel::delete(ws_tickets::table.filter(ws_tickets::ticket_hash.eq(ticket_hash)))
            .returning(WsTicket::as_returning())
            .get_result(conn)
            .await
            .optional()?)
    })
}

pub async fn touch_api_key(db: &Db, id: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::update(api_keys::table.find(id))
            .set(api_keys::last_used_at.eq(Some(now())))
            .execute(conn)
            .await?;
        Ok(())
    })
}

/// Ids of the collections a (non-admin) user may read.
pub async fn readable_collection_ids(db: &Db, user_id: &str) -> DbResult<Vec<String>> {
    db_run!(db, conn => {
        let mut ids: Vec<String> = collections::table
            .filter(collections::public.eq(true))
            .select(collections::id)
            .load(conn)
            .await?;
        let granted: Vec<String> = collection_grants::table
            .filter(collection_grants::user_id.eq(user_id))
            .select(collection_grants::collection_id)
            .load(conn)
            .await?;
        ids.extend(granted);
        ids.sort();
        ids.dedup();
        Ok(ids)
    })
}

pub async fn grant(db: &Db, collection_id: &str, user_id: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::insert_into(collection_grants::table)
            .values((
                collection_grants::collection_id.eq(collection_id),
                collection_grants::user_id.eq(user_id),
                collection_grants::created_at.eq(now()),
            ))
            .on_conflict((collection_grants::collection_id, collection_grants::user_id))
            .do_nothing()
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn revoke_grant(db: &Db, collection_id: &str, user_id: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::delete(
            collection_grants::table
                .filter(collection_grants::collection_id.eq(collection_id))
                .filter(collection_grants::user_id.eq(user_id)),
        )
        .execute(conn)
        .await?;
        Ok(())
    })
}

/// (user id, username, granted at) for a collection, by username.
pub async fn list_grants(
    db: &Db,
    collection_id: &str,
) -> DbResult<Vec<(String, String, chrono::NaiveDateTime)>> {
    db_run!(db, conn => {
        Ok(collection_grants::table
            .inner_join(users::table)
            .filter(collection_grants::collection_id.eq(collection_id))
            .order(users::username.asc())
            .select((users::id, users::username, collection_grants::created_at))
            .load(conn)
            .await?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::backends;

    fn user(name: &str) -> User {
        let t = now();
        User {
            id: UserId::random(),
            username: name.into(),
            email: None,
            password_hash: "x".into(),
            role: Role::User,
            disabled: false,
            token_version: 0,
            created_at: t,
            updated_at: t,
        }
    }

    #[tokio::test]
    async fn refresh_rotation_reuse_and_concurrency() {
        for test_db in backends().await {
            let db = test_db.db.clone();
            let u = create_user(&db, user("ann")).await.unwrap().unwrap();
            assert!(create_user(&db, user("ann")).await.unwrap().is_none());
            let later = now() + chrono::Duration::hours(1);
            let s = create_session(&db, &u.id, "h1", later).await.unwrap();

            let r = rotate_refresh(&db, "h1", "h2", later).await.unwrap();
            assert!(
                matches!(r, RefreshOutcome::Rotated { ref session_id, .. } if *session_id == s.id)
            );
            // Reusing h1 revokes the session, so h2 dies with it.
            assert_eq!(
                rotate_refresh(&db, "h1", "h3", later).await.unwrap(),
                RefreshOutcome::Reused
            );
            assert_eq!(
                rotate_refresh(&db, "h2", "h4", later).await.unwrap(),
                RefreshOutcome::Invalid
            );
            assert!(session_user(&db, &s.id).await.unwrap().is_none());
            assert_eq!(
                rotate_refresh(&db, "nope", "h5", later).await.unwrap(),
                RefreshOutcome::Invalid
            );

            // Two concurrent uses of one token: exactly one rotation wins.
            create_session(&db, &u.id, "c1", later).await.unwrap();
            let (a, b) = tokio::join!(
                rotate_refresh(&db, "c1", "c2", later),
                rotate_refresh(&db, "c1", "c3", later)
            );
            let rotated = [a.unwrap(), b.unwrap()]
                .into_iter()
                .filter(|o| matches!(o, RefreshOutcome::Rotated { .. }))
                .count();
            assert_eq!(rotated, 1);

            // Expired tokens do not rotate and do not count as reuse.
            let past = now() - chrono::Duration::seconds(1);
            let s2 = create_session(&db, &u.id, "e1", past).await.unwrap();
            assert_eq!(
                rotate_refresh(&db, "e1", "e2", later).await.unwrap(),
                RefreshOutcome::Invalid
            );
            assert!(session_user(&db, &s2.id).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn disabling_and_password_change_end_sessions() {
        for test_db in backends().await {
            let db = test_db.db.clone();
            let u = create_user(&db, user("bob")).await.unwrap().unwrap();
            let later = now() + chrono::Duration::hours(1);
            let s = create_session(&db, &u.id, "b1", later).await.unwrap();
            set_password(&db, &u.id, "new-hash").await.unwrap();
            assert!(session_user(&db, &s.id).await.unwrap().is_none());
            let after = user_by_id(&db, &u.id).await.unwrap().unwrap();
            assert_eq!(after.token_version, 1);
            assert_eq!(after.password_hash, "new-hash");

            let s = create_session(&db, &u.id, "b2", later).await.unwrap();
            let disabled = update_user(&db, &u.id, None, Some(true))
                .await
                .unwrap()
                .unwrap();
            assert!(disabled.disabled);
            assert!(session_user(&db, &s.id).await.unwrap().is_none());
            assert!(update_user(&db, "missing", Some(Role::Admin), None)
                .await
                .unwrap()
                .is_none());
        }
    }

    #[tokio::test]
    async fn tickets_are_spent_once_and_expired_ones_swept() {
        for test_db in backends().await {
            let db = test_db.db.clone();
            let u = create_user(&db, user("tia")).await.unwrap().unwrap();
            let later = now() + chrono::Duration::hours(1);
            let s = create_session(&db, &u.id, "t1", later).await.unwrap();
            let ticket = |hash: &str, expires_at| WsTicket {
                ticket_hash: hash.into(),
                user_id: u.id.clone(),
                session_id: Some(s.id.clone()),
                api_key_id: None,
                token_version: 0,
                credential_expires_at: Some(later),
                created_at: now(),
                expires_at,
            };
            create_ws_ticket(&db, &ticket("live", later)).await.unwrap();
            create_ws_ticket(&db, &ticket("old", now() - chrono::Duration::seconds(1)))
                .await
                .unwrap();
            // Issuing the next one sweeps the expired one.
            create_ws_ticket(&db, &ticket("next", later)).await.unwrap();
            assert!(take_ws_ticket(&db, "old").await.unwrap().is_none());

            let taken = take_ws_ticket(&db, "live").await.unwrap().unwrap();
            assert_eq!(
                (taken.user_id, taken.session_id, taken.api_key_id),
                (u.id.clone(), Some(s.id.clone()), None)
            );
            assert!(take_ws_ticket(&db, "live").await.unwrap().is_none());

            // Two concurrent uses: exactly one gets the ticket.
            let (a, b) = tokio::join!(take_ws_ticket(&db, "next"), take_ws_ticket(&db, "next"));
            let got = [a.unwrap(), b.unwrap()];
            assert_eq!(got.iter().filter(|t| t.is_some()).count(), 1);
        }
    }
}
