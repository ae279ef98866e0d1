//! Conversations and their messages. Every query is scoped to the owner, so a
//! conversation of someone else is indistinguishable from a missing one.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{conversations, messages};
use super::{now, Cursor, Db, DbError, DbResult};
use crate::db_run;
use crate::ids::{ConversationId, MessageId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = conversations)]
pub struct Conversation {
    pub id: ConversationId,
    pub user_id: UserId,
    pub title: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, PartialEq)]
#[diesel(table_name = messages)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub role: String,
    pub content: String,
    pub metadata: String,
    pub created_at: NaiveDateTime,
}

pub async fn create(db: &Db, user_id: &str, title: &str) -> DbResult<Conversation> {
    let t = now();
    let c = Conversation {
        id: ConversationId::random(),
        user_id: user_id.into(),
        title: title.to_string(),
        created_at: t,
        updated_at: t,
    };
    db_run!(db, conn => {
        diesel::insert_into(conversations::table)
            .values(&c)
            .execute(conn)
            .await?;
        Ok::<(), DbError>(())
    })?;
    Ok(c)
}

/// The owner's conversations, newest first, `limit` after `after`.
pub async fn list(
    db: &Db,
    user_id: &str,
    after: Option<Cursor>,
    limit: i64,
) -> DbResult<Vec<Conversation>> {
    db_run!(db, conn => {
        let mut q = conversations::table
            .filter(conversations::user_id.eq(user_id))
            .select(Conversation::as_select())
            .into_boxed();
        if let Some((ts, id)) = &after {
            q = q.filter(
                conversations::created_at.lt(*ts).or(conversations::created_at
                    .eq(*ts)
                    .and(conversations::id.lt(id.clone()))),
            );
        }
        Ok(q.order((conversations::created_at.desc(), conversations::id.desc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

pub async fn get(db: &Db, user_id: &str, id: &str) -> DbResult<Option<Conversation>> {
    db_run!(db, conn => {
        Ok(conversations::table
            .filter(conversations::id.eq(id))
            .filter(conversations::user_id.eq(user_id))
            .select(Conversation::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn rename(db: &Db, user_id: &str, id: &str, title: &str) -> DbResult<bool> {
    db_run!(db, conn => {
        let n = diesel::update(
            conversations::table
                .filter(conversations::id.eq(id))
                .filter(conversations::user_id.eq(user_id)),
        )
        .set((conversations::title.eq(title), conversations::updated_at.eq(now())))
        .execute(conn)
        .await?;
        Ok(n > 0)
    })
}

/// Delete a conversation with its messages; false when the owner has no such
/// conversation.
pub async fn delete(db: &Db, user_id: &str, id: &str) -> DbResult<bool> {
    let id = id.to_string();
    let user_id = user_id.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            let owned = conversations::table
                .filter(conversations::id.eq(&id))
                .filter(conversations::user_id.eq(&user_id))
                .count()
                .get_result::<i64>(conn)
                .await?;
            if owned == 0 {
                return Ok(false);
            }
            diesel::delete(messages::table.filter(messages::conversation_id.eq(&id)))
                .execute(conn)
                .await?;
            diesel::delete(conversations::table.find(&id))
                .execute(conn)
                .await?;
            Ok(true)
        })
        .await
    })
}

/// Messages of a conversation (ownership checked by the caller), oldest first.
pub async fn messages(
    db: &Db,
    conversation_id: &str,
    after: Option<Cursor>,
    limit: i64,
) -> DbResult<Vec<Message>> {
    db_run!(db, conn => {
        let mut q = messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .select(Message::as_select())
            .into_boxed();
        if let Some((ts, id)) = &after {
            q = q.filter(
                messages::created_at
                    .gt(*ts)
                    .or(messages::created_at.eq(*ts).and(messages::id.gt(id.clone()))),
            );
        }
        Ok(q.order((messages::created_at.asc(), messages::id.asc()))
            .limit(limit)
            .load(conn)
            .await?)
    })
}

/// The last `limit` messages of a conversation, oldest first.
pub async fn recent_messages(db: &Db, conversation_id: &str, limit: i64) -> DbResult<Vec<Message>> {
    let mut rows: Vec<Message> = db_run!(db, conn => {
        Ok::<_, DbError>(messages::table
            .filter(messages::conversation_id.eq(conversation_id))
            .order((messages::created_at.desc(), messages::id.desc()))
            .limit(limit)
            .select(Message::as_select())
            .load(conn)
            .await?)
    })?;
    rows.reverse();
    Ok(rows)
}

/// Append a message and touch the conversation.
pub async fn add_message(db: &Db, message: Message) -> DbResult<Message> {
    let m = message.clone();
    db_run!(db, conn => {
        let m = m.clone();
        conn.transaction::<_, DbError, _>(async move |conn| {
            diesel::insert_into(messages::table)
                .values(&m)
                .execute(conn)
                .await?;
            diesel::update(conversations::table.find(&m.conversation_id))
                .set(conversations::updated_at.eq(m.created_at))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
    })?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::accounts::{self, Role, User};
    use crate::db::testing::backends;

    #[tokio::test]
    async fn pages_newest_first_scoped_to_owner_and_messages_oldest_first() {
        for test_db in backends().await {
            let db = test_db.db.clone();
            let mut owners = Vec::new();
            for name in ["ann", "bob"] {
                let t = now();
                let u = User {
                    id: UserId::random(),
                    username: name.into(),
                    email: None,
                    password_hash: "x".into(),
                    role: Role::User,
                    disabled: false,
                    token_version: 0,
                    created_at: t,
                    updated_at: t,
                };
                owners.push(accounts::create_user(&db, u).await.unwrap().unwrap().id);
            }
            let (ann, bob) = (&owners[0], &owners[1]);
            let mut made = Vec::new();
            for i in 0..5 {
                made.push(create(&db, ann, &format!("c{i}")).await.unwrap());
            }
            create(&db, bob, "bob's").await.unwrap();

            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let page = list(&db, ann, cursor.clone(), 2).await.unwrap();
                seen.extend(page.iter().map(|c| c.title.clone()));
                if page.len() < 2 {
                    break;
                }
                let last = page.last().unwrap();
                cursor = Some((last.created_at, last.id.to_string()));
            }
            assert_eq!(seen, ["c4", "c3", "c2", "c1", "c0"]);

            let c = &made[0];
            assert!(get(&db, bob, &c.id).await.unwrap().is_none());
            assert!(!rename(&db, bob, &c.id, "mine").await.unwrap());
            assert!(!delete(&db, bob, &c.id).await.unwrap());
            for (i, role) in ["user", "assistant", "user"].iter().enumerate() {
                add_message(
                    &db,
                    Message {
                        id: MessageId::random(),
                        conversation_id: c.id.clone(),
                        role: role.to_string(),
                        content: format!("m{i}"),
                        metadata: "{}".into(),
                        created_at: now(),
                    },
                )
                .await
                .unwrap();
            }
            let first = messages(&db, &c.id, None, 2).await.unwrap();
            let last = first.last().unwrap();
            let rest = messages(&db, &c.id, Some((last.created_at, last.id.to_string())), 2)
                .await
                .unwrap();
            let contents: Vec<_> = first
                .iter()
                .chain(&rest)
                .map(|m| m.content.as_str())
                .collect();
            assert_eq!(contents, ["m0", "m1", "m2"]);
            assert!(delete(&db, ann, &c.id).await.unwrap());
            assert!(messages(&db, &c.id, None, 10).await.unwrap().is_empty());
        }
    }
}
