//! Collections: named sets of documents, each searched as one unit.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use super::lexical_log::append_in_tx;
use super::schema::{chunks, collections, documents, lexical_log_head};
use super::{is_unique_violation, now, Db, DbError, DbResult};
use crate::db_run;
use crate::ids::{ChunkId, CollectionId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, Serialize, PartialEq)]
#[diesel(table_name = collections)]
pub struct Collection {
    pub id: CollectionId,
    pub name: String,
    pub description: String,
    pub created_at: NaiveDateTime,
    pub public: bool,
    /// Bumped after each change to the collection's chunks or name (see
    /// [`bump_generation`]); part of every cached result's key.
    #[serde(skip)]
    pub generation: i64,
    /// The change log's head at the last bump.
    #[serde(skip)]
    pub log_position: i64,
    /// Tuned fusion parameters (JSON), see [`Collection::tuned_fusion`].
    #[serde(skip)]
    pub retrieval: Option<String>,
}

impl Collection {
    /// The fusion `ragchat eval --tune --store` chose for this collection.
    /// Unreadable values (written by another version) count as none.
    pub fn tuned_fusion(&self) -> Option<crate::config::Fusion> {
        let raw = self.retrieval.as_deref()?;
        match serde_json::from_str(raw) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(collection = %self.name, error = %e, "ignoring unreadable tuned fusion");
                None
            }
        }
    }
}

/// Store (or with `None` clear) a collection's tuned fusion. Cached results
/// need no bump: their key holds the fusion they were computed with.
pub async fn set_tuned_fusion(
    db: &Db,
    id: &str,
    fusion: Option<&crate::config::Fusion>,
) -> DbResult<()> {
    let value = fusion.map(|f| serde_json::to_string(f).unwrap_or_default());
    db_run!(db, conn => {
        diesel::update(collections::table.filter(collections::id.eq(id)))
            .set(collections::retrieval.eq(value.clone()))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn collection_by_name(db: &Db, name: &str) -> DbResult<Option<Collection>> {
    db_run!(db, conn => {
        Ok(collections::table
            .filter(collections::name.eq(name))
            .select(Collection::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

pub async fn list_collections(db: &Db) -> DbResult<Vec<Collection>> {
    db_run!(db, conn => {
        Ok(collections::table
            .order(collections::name.asc())
            .select(Collection::as_select())
            .load(conn)
            .await?)
    })
}

/// Return the collection named `name`, creating it if needed. Safe under
/// concurrent callers: the unique name decides the winner.
pub async fn ensure_collection(db: &Db, name: &str) -> DbResult<Collection> {
    if let Some(c) = collection_by_name(db, name).await? {
        return Ok(c);
    }
    let new = Collection {
        id: CollectionId::random(),
        name: name.to_string(),
        description: String::new(),
        created_at: now(),
        public: false,
        generation: 0,
        log_position: 0,
        retrieval: None,
    };
    db_run!(db, conn => {
        diesel::insert_into(collections::table)
            .values(&new)
            .on_conflict(collections::name)
            .do_nothing()
            .execute(conn)
            .await?;
        Ok::<(), DbError>(())
    })?;
    collection_by_name(db, name)
        .await?
        .ok_or_else(|| DbError::Query(diesel::result::Error::NotFound))
}

/// Delete a collection with its documents and chunks, logging each chunk's
/// removal; returns the chunk ids removed so the caller can remove them from
/// the vector index too.
pub async fn delete_collection(db: &Db, id: &str) -> DbResult<Vec<ChunkId>> {
    let id = id.to_string();
    db_run!(db, conn => {
        Ok(conn
            .transaction::<_, DbError, _>(async move |conn| {
                    let ids: Vec<ChunkId> =
                        diesel::delete(chunks::table.filter(chunks::collection_id.eq(&id)))
                            .returning(chunks::id)
                            .get_results(conn)
                            .await?;
                    diesel::delete(documents::table.filter(documents::collection_id.eq(&id)))
                        .execute(conn)
                        .await?;
                    diesel::delete(collections::table.filter(collections::id.eq(&id)))
                        .execute(conn)
                        .await?;
                    append_in_tx!(conn, &super::documents::deletions(&ids));
                    Ok(ids)
            })
            .await?)
    })
}

pub async fn set_collection_description(db: &Db, id: &str, description: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::update(collections::table.filter(collections::id.eq(id)))
            .set(collections::description.eq(description))
            .execute(conn)
            .await?;
        Ok(())
    })
}

pub async fn collection_by_id(db: &Db, id: &str) -> DbResult<Option<Collection>> {
    db_run!(db, conn => {
        Ok(collections::table
            .find(id)
            .select(Collection::as_select())
            .first(conn)
            .await
            .optional()?)
    })
}

/// Insert a collection; `Ok(None)` when the name is taken.
pub async fn create_collection(db: &Db, c: Collection) -> DbResult<Option<Collection>> {
    let result = db_run!(db, conn => {
        diesel::insert_into(collections::table)
            .values(&c)
            .execute(conn)
            .await
            .map_err(DbError::from)
    });
    match result {
        Ok(_) => Ok(Some(c)),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = collections)]
pub struct CollectionChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub public: Option<bool>,
}

/// Apply changes; `Ok(None)` when the new name is taken.
pub async fn update_collection(
    db: &Db,
    id: &str,
    changes: CollectionChanges,
) -> DbResult<Option<()>> {
    if changes.name.is_none() && changes.description.is_none() && changes.public.is_none() {
        return Ok(Some(()));
    }
    let renamed = changes.name.is_some();
    let result = db_run!(db, conn => {
        diesel::update(collections::table.find(id))
            .set(&changes)
            .execute(conn)
            .await
            .map_err(DbError::from)
    });
    match result {
        // Results carry the collection's name: a cached one must not
        // outlive a rename.
        Ok(_) if renamed => bump_generation(db, id).await.map(Some),
        Ok(_) => Ok(Some(())),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Mark that a collection's searchable content (its chunks or its name)
/// changed: bump its generation, so every cached result for it becomes
/// unreachable, and record the change log's head, which a node's lexical
/// index must have applied before it caches new results for it. Called once
/// the change is in the database and the vector index. `log_position` never
/// moves back, even when two writers bump at once.
pub async fn bump_generation(db: &Db, id: &str) -> DbResult<()> {
    let id = id.to_string();
    db_run!(db, conn => {
        conn.transaction::<_, DbError, _>(async move |conn| {
            diesel::update(collections::table.find(&id))
                .set(collections::generation.eq(collections::generation + 1))
                .execute(conn)
                .await?;
            let head: i64 = lexical_log_head::table
                .find(super::lexical_log::HEAD)
                .select(lexical_log_head::pos)
                .first(conn)
                .await?;
            diesel::update(
                collections::table
                    .find(&id)
                    .filter(collections::log_position.lt(head)),
            )
            .set(collections::log_position.eq(head))
            .execute(conn)
            .await?;
            Ok(())
        })
        .await
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::backends;

    #[tokio::test]
    async fn ensure_create_rename_and_delete() {
        for test_db in backends().await {
            let db = &test_db.db;
            let a = ensure_collection(db, "a").await.unwrap();
            assert_eq!(ensure_collection(db, "a").await.unwrap(), a);
            assert_eq!(collection_by_id(db, &a.id).await.unwrap(), Some(a.clone()));
            let b = Collection {
                id: CollectionId::random(),
                name: "b".into(),
                description: "second".into(),
                created_at: now(),
                public: true,
                generation: 0,
                log_position: 0,
                retrieval: None,
            };
            assert_eq!(
                create_collection(db, b.clone()).await.unwrap(),
                Some(b.clone())
            );
            let taken = Collection {
                id: CollectionId::random(),
                ..b.clone()
            };
            assert_eq!(create_collection(db, taken).await.unwrap(), None);

            let rename = |name: &str| CollectionChanges {
                name: Some(name.into()),
                ..CollectionChanges::default()
            };
            assert_eq!(
                update_collection(db, &a.id, rename("b")).await.unwrap(),
                None
            );
            assert_eq!(
                update_collection(db, &a.id, rename("c")).await.unwrap(),
                Some(())
            );
            let renamed = collection_by_id(db, &a.id).await.unwrap().unwrap();
            assert_eq!(renamed.generation, a.generation + 1, "a rename bumps");
            // Another bump with the log ahead records its head; the
            // position never moves back.
            crate::db::lexical_log::append(
                db,
                vec![(ChunkId::random(), crate::db::lexical_log::LogOp::Delete)],
            )
            .await
            .unwrap();
            bump_generation(db, &a.id).await.unwrap();
            let bumped = collection_by_id(db, &a.id).await.unwrap().unwrap();
            let head = crate::db::lexical_log::head(db).await.unwrap().pos;
            assert_eq!(
                (bumped.generation, bumped.log_position),
                (renamed.generation + 1, head)
            );
            set_collection_description(db, &a.id, "first")
                .await
                .unwrap();
            let names: Vec<(String, String)> = list_collections(db)
                .await
                .unwrap()
                .into_iter()
                .map(|c| (c.name, c.description))
                .collect();
            assert_eq!(
                names,
                [("b".into(), "second".into()), ("c".into(), "first".into())]
            );

            assert!(delete_collection(db, &a.id).await.unwrap().is_empty());
            assert_eq!(collection_by_id(db, &a.id).await.unwrap(), None);
            assert_eq!(collection_by_name(db, "b").await.unwrap(), Some(b));
        }
    }
}
