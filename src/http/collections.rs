//! Collections: listing what the caller may read; admin create, rename,
//! delete and access grants.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::ToSchema;

use super::views::{CollectionView, ErrorBody, GrantView, Items, Page, Time};
use crate::app::App;
use crate::auth::{Access, Caller, Scope};
use crate::db::accounts;
use crate::db::collections::{self, Collection, CollectionChanges};
use crate::db::documents;
use crate::error::{Error, ErrorCode};
use crate::ingest::pipeline;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/collections", web::get().to(list))
        .route("/collections", web::post().to(create))
        .route("/collections/{id}", web::get().to(get))
        .route("/collections/{id}", web::patch().to(update))
        .route("/collections/{id}", web::delete().to(delete))
        .route("/collections/{id}/grants", web::get().to(list_grants))
        .route(
            "/collections/{id}/grants/{user_id}",
            web::put().to(put_grant),
        )
        .route(
            "/collections/{id}/grants/{user_id}",
            web::delete().to(delete_grant),
        );
}

/// The collection's view, with its document and chunk counts.
async fn view<'a>(app: &App, c: &'a Collection) -> Result<CollectionView<'a>, Error> {
    let documents = documents::count_documents(&app.db, Some(&c.id)).await?;
    let chunks = documents::count_chunks(&app.db, Some(&c.id)).await?;
    Ok(CollectionView::new(c, documents, chunks))
}

fn not_found() -> Error {
    Error::new(ErrorCode::CollectionNotFound, "no such collection")
}

/// The collection if the caller may read it; otherwise it does not exist.
async fn visible(app: &App, caller: &Caller, id: &str) -> Result<Collection, Error> {
    let c = collections::collection_by_id(&app.db, id)
        .await?
        .ok_or_else(not_found)?;
    if Access::of(&app.db, caller).await?.can_read(&c.id) {
        Ok(c)
    } else {
        Err(not_found())
    }
}

fn check_name(name: &str) -> Result<String, Error> {
    let n = name.trim();
    let ok = !n.is_empty()
        && n.chars().count() <= 100
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(n.to_string())
    } else {
        Err(Error::field(
            "name",
            "must be 1 to 100 characters of A-Z, a-z, 0-9, `.`, `_` and `-`",
        ))
    }
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.chars().count() > 2000 {
        return Err(Error::field(
            "description",
            "must be at most 2000 characters",
        ));
    }
    Ok(())
}

fn name_taken(name: &str) -> Error {
    Error::new(
        ErrorCode::CollectionExists,
        format!("a collection named `{name}` exists"),
    )
}

/// The collections the caller may read, by name (one page).
#[utoipa::path(
    get,
    path = "/api/v1/collections",
    tag = "collections",
    operation_id = "list_collections",
    responses(
        (status = 200, description = "Every readable collection; `next_cursor` is always null", body = Page<CollectionView>),
        (status = 403, description = "`insufficient_scope`: a key without `query` or `chat`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["query"]), ("api_key" = ["chat"])),
)]
pub async fn list(caller: Caller, app: web::Data<App>) -> Result<HttpResponse, Error> {
    caller.require_any_scope(&[Scope::Query, Scope::Chat])?;
    let access = Access::of(&app.db, &caller).await?;
    let readable: Vec<Collection> = collections::list_collections(&app.db)
        .await?
        .into_iter()
        .filter(|c| access.can_read(&c.id))
        .collect();
    let mut items = Vec::with_capacity(readable.len());
    for c in &readable {
        items.push(view(&app, c).await?);
    }
    // Not paged: every readable collection is on the one page.
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateCollectionBody)]
pub struct CreateBody {
    /// 1 to 100 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^\\s*[A-Za-z0-9._-]{1,100}\\s*$")]
    name: String,
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    description: Option<String>,
    public: Option<bool>,
}

/// Create a collection.
#[utoipa::path(
    post,
    path = "/api/v1/collections",
    tag = "collections",
    operation_id = "create_collection",
    request_body = CreateBody,
    responses(
        (status = 201, description = "The new collection", body = CollectionView),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 409, description = "`collection_exists`", body = ErrorBody),
        (status = 422, description = "`invalid_field`: name or description", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn create(
    caller: Caller,
    app: web::Data<App>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, Error> {
    caller.require_admin()?;
    let b = body.into_inner();
    let name = check_name(&b.name)?;
    let description = b.description.unwrap_or_default();
    check_description(&description)?;
    let c = Collection {
        id: crate::ids::CollectionId::random(),
        name: name.clone(),
        description,
        created_at: crate::db::now(),
        public: b.public.unwrap_or(false),
        generation: 0,
        log_position: 0,
        retrieval: None,
    };
    let c = collections::create_collection(&app.db, c)
        .await?
        .ok_or_else(|| name_taken(&name))?;
    Ok(HttpResponse::Created().json(view(&app, &c).await?))
}

/// One collection, with its document and chunk counts.
#[utoipa::path(
    get,
    path = "/api/v1/collections/{id}",
    tag = "collections",
    operation_id = "get_collection",
    params(("id" = String, Path, description = "The collection's id")),
    responses(
        (status = 200, description = "The collection", body = CollectionView),
        (status = 403, description = "`insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: unknown, or not readable by the caller", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["query"]), ("api_key" = ["chat"])),
)]
pub async fn get(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    caller.require_any_scope(&[Scope::Query, Scope::Chat])?;
    let c = visible(&app, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&app, &c).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateCollectionBody)]
pub struct UpdateBody {
    /// 1 to 100 characters of `A-Z a-z 0-9 . _ -`.
    #[schema(pattern = "^\\s*[A-Za-z0-9._-]{1,100}\\s*$")]
    name: Option<String>,
    /// At most 2000 characters.
    #[schema(max_length = 2000)]
    description: Option<String>,
    public: Option<bool>,
}

/// Rename a collection, change its description or make it public or private.
#[utoipa::path(
    patch,
    path = "/api/v1/collections/{id}",
    tag = "collections",
    operation_id = "update_collection",
    params(("id" = String, Path, description = "The collection's id")),
    request_body = UpdateBody,
    responses(
        (status = 200, description = "The collection as changed", body = CollectionView),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: unknown, or not readable by the caller", body = ErrorBody),
        (status = 409, description = "`collection_exists`: the new name is taken", body = ErrorBody),
        (status = 422, description = "`invalid_field`: name or description", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn update(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, Error> {
    let c = visible(&app, &caller, &path).await?;
    caller.require_admin()?;
    let b = body.into_inner();
    let name = b.name.as_deref().map(check_name).transpose()?;
    if let Some(d) = &b.description {
        check_description(d)?;
    }
    let changes = CollectionChanges {
        name: name.clone(),
        description: b.description,
        public: b.public,
    };
    if collections::update_collection(&app.db, &c.id, changes)
        .await?
        .is_none()
    {
        return Err(name_taken(name.as_deref().unwrap_or_default()));
    }
    let c = collections::collection_by_id(&app.db, &c.id)
        .await?
        .ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(view(&app, &c).await?))
}

/// Delete a collection with its documents, from the database and both indexes.
#[utoipa::path(
    delete,
    path = "/api/v1/collections/{id}",
    tag = "collections",
    operation_id = "delete_collection",
    params(("id" = String, Path, description = "The collection's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: unknown, or not readable by the caller", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn delete(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let c = visible(&app, &caller, &path).await?;
    caller.require_admin()?;
    pipeline::delete_collection(&app.indexer(), &c).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The users granted read access to a private collection.
#[utoipa::path(
    get,
    path = "/api/v1/collections/{id}/grants",
    tag = "collections",
    operation_id = "list_grants",
    params(("id" = String, Path, description = "The collection's id")),
    responses(
        (status = 200, description = "The grants", body = Items<GrantView>),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: unknown, or not readable by the caller", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn list_grants(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<String>,
) -> Result<HttpResponse, Error> {
    let c = visible(&app, &caller, &path).await?;
    caller.require_admin()?;
    let items = accounts::list_grants(&app.db, &c.id)
        .await?
        .into_iter()
        .map(|(user_id, username, at)| GrantView {
            user_id,
            username,
            created_at: Time(at),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Items { items }))
}

/// Let a user read the collection (idempotent).
#[utoipa::path(
    put,
    path = "/api/v1/collections/{id}/grants/{user_id}",
    tag = "collections",
    operation_id = "put_grant",
    params(("id" = String, Path, description = "The collection's id"), ("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Granted"),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found` or `user_not_found`", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn put_grant(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (collection_id, user_id) = path.into_inner();
    let c = visible(&app, &caller, &collection_id).await?;
    caller.require_admin()?;
    accounts::user_by_id(&app.db, &user_id)
        .await?
        .ok_or_else(|| Error::new(ErrorCode::UserNotFound, "no such user"))?;
    accounts::grant(&app.db, &c.id, &user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Take a user's grant away (idempotent).
#[utoipa::path(
    delete,
    path = "/api/v1/collections/{id}/grants/{user_id}",
    tag = "collections",
    operation_id = "delete_grant",
    params(("id" = String, Path, description = "The collection's id"), ("user_id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Revoked (or there was none)"),
        (status = 403, description = "`forbidden`: not an admin, or `insufficient_scope`", body = ErrorBody),
        (status = 404, description = "`collection_not_found`: unknown, or not readable by the caller", body = ErrorBody),
    ),
    security(("jwt" = []), ("api_key" = ["admin"])),
)]
pub async fn delete_grant(
    caller: Caller,
    app: web::Data<App>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Error> {
    let (collection_id, user_id) = path.into_inner();
    let c = visible(&app, &caller, &collection_id).await?;
    caller.require_admin()?;
    accounts::revoke_grant(&app.db, &c.id, &user_id).await?;
    Ok(HttpResponse::NoContent().finish())
}
