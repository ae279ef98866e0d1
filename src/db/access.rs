//! Who may read which collection: public collections and per-user grants.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::accounts::is_unique_violation;
use super::models::Collection;
use super::repo::now;
use super::schema::{collection_grants, collections, users};
use super::{Db, DbError, DbResult};
use crate::db_run;

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
    let result = db_run!(db, conn => {
        diesel::update(collections::table.find(id))
            .set(&changes)
            .execute(conn)
            .await
            .map_err(DbError::from)
    });
    match result {
        Ok(_) => Ok(Some(())),
        Err(e) if is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
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
