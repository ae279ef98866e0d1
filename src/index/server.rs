//! [`VectorIndex`] on a Qdrant server (or cluster) over gRPC through
//! `qdrant-client`: one server-side collection for all ragchat collections,
//! filtered by the same `collection_id` payload field as the embedded shard,
//! with the same point ids, so either backend can be rebuilt from the DB.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, value::Kind, vectors_config, CollectionStatus, Condition,
    CountPointsBuilder, CreateCollectionBuilder, CreateFieldIndexCollectionBuilder,
    DeletePointsBuilder, Distance, FieldType, Filter, OptimizersConfigDiff, PayloadSchemaType,
    PointId, PointStruct, PointsIdsList, PointsOperationResponse, Query, QueryPointsBuilder,
    ScoredPoint, ScrollPointsBuilder, UpdateCollectionBuilder, UpdateStatus, UpsertPointsBuilder,
    Value, VectorParams, VectorParamsBuilder, VectorParamsMap, VectorsConfig,
};
use qdrant_client::{Qdrant, QdrantError};
use tonic::Code;
use uuid::Uuid;

use crate::config::VectorSettings;
use crate::ids::{ChunkId, CollectionId};

use super::edge::{COLLECTION_FIELD, DOCUMENT_FIELD, VECTOR_NAME};
use super::{Hit, IndexError, IndexResult, VectorIndex, VectorPoint};

/// Points per upsert request: 512 MiniLM points are about 1 MB, far below
/// gRPC's message limits, and a retried batch stays cheap.
const UPSERT_BATCH: usize = 512;
/// Ids per delete request.
const DELETE_BATCH: usize = 1000;
/// Page size when scrolling ids.
const SCROLL_PAGE: u32 = 1000;
/// How long `optimize` waits for the server's optimisers to finish. They
/// run in the background anyway and searches are complete meanwhile (just
/// slower), so waiting longer would only hold up the caller.
const OPTIMIZE_WAIT: Duration = Duration::from_secs(120);
const OPTIMIZE_POLL: Duration = Duration::from_millis(250);
/// Upper bound for one wait between retries, whatever the server asks.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The client's own version: the server should be within one minor version
/// of it (Qdrant's compatibility rule).
const CLIENT_MAJOR: u64 = 1;
const CLIENT_MINOR: u64 = 19;

/// Dense vector index in a collection on a Qdrant server.
pub struct ServerVectorIndex {
    client: Qdrant,
    collection: String,
    url: String,
    dim: usize,
    max_retries: u32,
    backoff: Duration,
}

impl std::fmt::Debug for ServerVectorIndex {
    // The client holds the API key; only say where the index lives.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerVectorIndex")
            .field("url", &self.url)
            .field("collection", &self.collection)
            .field("dim", &self.dim)
            .finish()
    }
}

impl ServerVectorIndex {
    /// Connects to the server in `settings`, creates the collection for
    /// `dim`-dimensional cosine vectors if it is missing (with the payload
    /// indexes the filters use), and refuses an existing collection built for
    /// another dimension or distance.
    pub async fn open(settings: &VectorSettings, dim: usize) -> IndexResult<Self> {
        if dim == 0 {
            return Err(IndexError::Vector(
                "vector dimension must be greater than zero".to_owned(),
            ));
        }
        let api_key = Some(settings.qdrant_api_key.clone()).filter(|k| !k.is_empty());
        // The client's own version check prints to stdout from a thread of its
        // own; `check_server` does it here, through the log.
        let client = Qdrant::from_url(&settings.qdrant_url)
            .api_key(api_key)
            .timeout(Duration::from_secs(settings.qdrant_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.qdrant_connect_timeout_secs))
            .skip_compatibility_check()
            .build()
            .map_err(|e| {
                IndexError::Vector(format!(
                    "invalid Qdrant URL {:?}: {}",
                    settings.qdrant_url,
                    describe(&e)
                ))
            })?;
        let index = Self {
            client,
            collection: settings.qdrant_collection.clone(),
            url: settings.qdrant_url.clone(),
            dim,
            max_retries: settings.qdrant_max_retries,
            backoff: Duration::from_millis(settings.qdrant_retry_backoff_ms),
        };
        index.check_server().await?;
        index.ensure_collection().await?;
        index.ensure_payload_indexes().await?;
        Ok(index)
    }

    /// Dimension of the stored vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Name of the server-side collection.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The server answers; its version is logged, and a warning given when
    /// it is outside the client's compatibility window.
    async fn check_server(&self) -> IndexResult<()> {
        let reply = self
            .retry("health check", || self.client.health_check())
            .await?;
        let compatible = parse_version(&reply.version).is_some_and(|(major, minor)| {
            major == CLIENT_MAJOR && minor.abs_diff(CLIENT_MINOR) <= 1
        });
        if compatible {
            tracing::info!(url = %self.url, version = %reply.version, collection = %self.collection, "Qdrant server");
        } else {
            tracing::warn!(
                url = %self.url,
                version = %reply.version,
                "Qdrant server version is outside this client's compatibility window ({CLIENT_MAJOR}.{}-{CLIENT_MAJOR}.{})",
                CLIENT_MINOR - 1,
                CLIENT_MINOR + 1
            );
        }
        Ok(())
    }

    async fn ensure_collection(&self) -> IndexResult<()> {
        let exists = self
            .retry("collection lookup", || {
                self.client.collection_exists(&self.collection)
            })
            .await?;
        if !exists {
            let params: VectorParams =
                VectorParamsBuilder::new(self.dim as u64, Distance::Cosine).build();
            let vectors = VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: HashMap::from([(VECTOR_NAME.to_owned(), params)]),
                })),
            };
            let request = CreateCollectionBuilder::new(&self.collection).vectors_config(vectors);
            let created = self
                .retry("create collection", || {
                    self.client.create_collection(request.clone())
                })
                .await;
            match created {
                Ok(_) => tracing::info!(
                    collection = %self.collection,
                    dim = self.dim,
                    "created Qdrant collection"
                ),
                // Another node may have created it between the lookup and
                // the create; its configuration is checked below like any other.
                Err(e) => {
                    let exists_now = self
                        .retry("collection lookup", || {
                            self.client.collection_exists(&self.collection)
                        })
                        .await?;
                    if !exists_now {
                        return Err(e);
                    }
                }
            }
        }
        self.check_collection().await
    }

    /// The collection has the dense vector this index writes, with this
    /// dimension and cosine distance.
    async fn check_collection(&self) -> IndexResult<()> {
        let info = self
            .retry("collection info", || {
                self.client.collection_info(&self.collection)
            })
            .await?;
        let config = info
            .result
            .and_then(|info| info.config)
            .and_then(|config| config.params)
            .and_then(|params| params.vectors_config)
            .and_then(|vectors| vectors.config);
        let name = &self.collection;
        let params = match config {
            Some(vectors_config::Config::ParamsMap(map)) => map.map.get(VECTOR_NAME).copied(),
            Some(vectors_config::Config::Params(_)) => {
                return Err(IndexError::Vector(format!(
                    "Qdrant collection {name:?} has one unnamed vector, but ragchat stores a named \
                     vector {VECTOR_NAME:?}; set vector.qdrant_collection to another name"
                )))
            }
            None => None,
        };
        let Some(params) = params else {
            return Err(IndexError::Vector(format!(
                "Qdrant collection {name:?} has no dense vector named {VECTOR_NAME:?}; \
                 set vector.qdrant_collection to another name"
            )));
        };
        if params.size != self.dim as u64 {
            return Err(IndexError::Vector(format!(
                "Qdrant collection {name:?} holds vectors of dimension {}, but the embedding \
                 model produces dimension {} (embedding model changed?); delete the collection \
                 or set vector.qdrant_collection to another name, then run `ragchat reindex`",
                params.size, self.dim
            )));
        }
        let distance = params.distance();
        if distance != Distance::Cosine {
            return Err(IndexError::Vector(format!(
                "Qdrant collection {name:?} uses {} distance, but ragchat needs Cosine; \
                 delete the collection or set vector.qdrant_collection to another name, \
                 then run `ragchat reindex`",
                distance.as_str_name()
            )));
        }
        Ok(())
    }

    /// Keyword indexes on the collection and document ids: the search filter
    /// and the deletes by collection go through them.
    async fn ensure_payload_indexes(&self) -> IndexResult<()> {
        let info = self
            .retry("collection info", || {
                self.client.collection_info(&self.collection)
            })
            .await?;
        let schema = info
            .result
            .map(|info| info.payload_schema)
            .unwrap_or_default();
        for field in [COLLECTION_FIELD, DOCUMENT_FIELD] {
            let indexed = schema
                .get(field)
                .is_some_and(|s| s.data_type() == PayloadSchemaType::Keyword);
            if indexed {
                continue;
            }
            let request =
                CreateFieldIndexCollectionBuilder::new(&self.collection, field, FieldType::Keyword)
                    .wait(true);
            self.retry(&format!("index payload field {field}"), || {
                self.client.create_field_index(request.clone())
            })
            .await?;
        }
        Ok(())
    }

    /// Runs `op`, again after a growing pause while it fails transiently
    /// (at most `max_retries` more times). Every request this index sends is
    /// idempotent (upserts and deletes by id or filter, reads), so a request
    /// that timed out after the server applied it is safe to repeat.
    async fn retry<T, F, Fut>(&self, what: &str, mut op: F) -> IndexResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Ok(value) => return Ok(value),
                Err(e) => match transient_wait(&e) {
                    Some(asked) if attempt < self.max_retries => {
                        let wait = backoff(self.backoff, attempt).max(asked).min(MAX_BACKOFF);
                        tracing::warn!(
                            what,
                            attempt = attempt + 1,
                            wait_ms = wait.as_millis() as u64,
                            error = %describe(&e),
                            "Qdrant request failed transiently; retrying"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    _ => {
                        return Err(IndexError::Vector(format!(
                            "Qdrant {what} ({}, collection {:?}): {}",
                            self.url,
                            self.collection,
                            describe(&e)
                        )))
                    }
                },
            }
        }
    }

    fn check_dim(&self, len: usize, what: &str) -> IndexResult<()> {
        if len == self.dim {
            Ok(())
        } else {
            Err(IndexError::Vector(format!(
                "{what} has {len} dimensions, the index expects {}",
                self.dim
            )))
        }
    }

    async fn delete_where(&self, what: &str, filter: Filter) -> IndexResult<()> {
        let request = DeletePointsBuilder::new(&self.collection)
            .points(filter)
            .wait(true);
        let response = self
            .retry(what, || self.client.delete_points(request.clone()))
            .await?;
        self.applied(what, &response)
    }

    /// With `wait = true` the server answers once the operation is applied;
    /// any other status means it was not.
    fn applied(&self, what: &str, response: &PointsOperationResponse) -> IndexResult<()> {
        let status = response
            .result
            .map(|r| r.status())
            .unwrap_or(UpdateStatus::UnknownUpdateStatus);
        if status == UpdateStatus::Completed {
            Ok(())
        } else {
            Err(IndexError::Vector(format!(
                "Qdrant {what} (collection {:?}) was not applied: status {}",
                self.collection,
                status.as_str_name()
            )))
        }
    }

    async fn status(&self) -> IndexResult<CollectionStatus> {
        let info = self
            .retry("collection info", || {
                self.client.collection_info(&self.collection)
            })
            .await?;
        Ok(info
            .result
            .map(|info| info.status())
            .unwrap_or(CollectionStatus::UnknownCollectionStatus))
    }
}

#[async_trait]
impl VectorIndex for ServerVectorIndex {
    async fn upsert(&self, points: Vec<VectorPoint>) -> IndexResult<()> {
        if let Some(bad) = points.iter().find(|p| p.vector.len() != self.dim) {
            self.check_dim(
                bad.vector.len(),
                &format!("vector of chunk {}", bad.chunk_id),
            )?;
        }
        let points = points
            .into_iter()
            .map(to_point)
            .collect::<IndexResult<Vec<_>>>()?;
        for batch in points.chunks(UPSERT_BATCH) {
            let request = UpsertPointsBuilder::new(&self.collection, batch.to_vec()).wait(true);
            let response = self
                .retry("upsert", || self.client.upsert_points(request.clone()))
                .await?;
            self.applied("upsert", &response)?;
        }
        Ok(())
    }

    async fn delete(&self, chunk_ids: Vec<ChunkId>) -> IndexResult<()> {
        // An id that is not a UUID was never stored: nothing to delete.
        let ids: Vec<PointId> = chunk_ids
            .iter()
            .filter_map(ChunkId::to_uuid)
            .map(point_id)
            .collect();
        for batch in ids.chunks(DELETE_BATCH) {
            let request = DeletePointsBuilder::new(&self.collection)
                .points(PointsIdsList {
                    ids: batch.to_vec(),
                })
                .wait(true);
            let response = self
                .retry("delete", || self.client.delete_points(request.clone()))
                .await?;
            self.applied("delete", &response)?;
        }
        Ok(())
    }

    async fn delete_collection(&self, collection_id: CollectionId) -> IndexResult<()> {
        self.delete_where("delete collection", collections_filter(&[collection_id]))
            .await
    }

    async fn search(
        &self,
        vector: Vec<f32>,
        collections: Vec<CollectionId>,
        limit: usize,
    ) -> IndexResult<Vec<Hit>> {
        if collections.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        self.check_dim(vector.len(), "query vector")?;
        // The filter is part of the request: Qdrant applies it inside the
        // HNSW search (or searches the filtered points exactly), so `limit`
        // hits come back whenever that many readable points exist.
        let request = QueryPointsBuilder::new(&self.collection)
            .query(Query::new_nearest(vector))
            .using(VECTOR_NAME)
            .filter(collections_filter(&collections))
            .limit(limit as u64)
            .with_payload(true)
            .with_vectors(false);
        let response = self
            .retry("search", || self.client.query(request.clone()))
            .await?;
        Ok(response.result.into_iter().filter_map(to_hit).collect())
    }

    async fn count(&self) -> IndexResult<u64> {
        let request = CountPointsBuilder::new(&self.collection).exact(true);
        let response = self
            .retry("count", || self.client.count(request.clone()))
            .await?;
        Ok(response.result.map(|r| r.count).unwrap_or(0))
    }

    async fn chunk_ids(&self) -> IndexResult<Vec<ChunkId>> {
        let mut chunk_ids = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(&self.collection)
                .limit(SCROLL_PAGE)
                .with_payload(false)
                .with_vectors(false);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let page = self
                .retry("scroll", || self.client.scroll(request.clone()))
                .await?;
            chunk_ids.extend(
                page.result
                    .into_iter()
                    .filter_map(|p| point_uuid(p.id?))
                    .map(ChunkId::from),
            );
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(chunk_ids),
            }
        }
    }

    async fn optimize(&self) -> IndexResult<()> {
        // The server optimises on its own; a collection left `Grey` (pending
        // optimisations, e.g. after a restart) starts on any collection update.
        if self.status().await? == CollectionStatus::Grey {
            let request = UpdateCollectionBuilder::new(&self.collection)
                .optimizers_config(OptimizersConfigDiff::default());
            self.retry("start optimizers", || {
                self.client.update_collection(request.clone())
            })
            .await?;
        }
        let deadline = tokio::time::Instant::now() + OPTIMIZE_WAIT;
        loop {
            let status = self.status().await?;
            match status {
                CollectionStatus::Green => return Ok(()),
                CollectionStatus::Red => {
                    return Err(IndexError::Vector(format!(
                    "Qdrant collection {:?} is red (an optimisation failed; see the server log)",
                    self.collection
                )))
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    tracing::info!(
                        collection = %self.collection,
                        status = status.as_str_name(),
                        "Qdrant is still optimizing; it goes on in the background"
                    );
                    return Ok(());
                }
                _ => tokio::time::sleep(OPTIMIZE_POLL).await,
            }
        }
    }

    async fn flush(&self) -> IndexResult<()> {
        // Every write was acknowledged with `wait = true`, i.e. after the
        // server logged and applied it; its durability is the server's own
        // (WAL, replicas). Nothing is buffered on this side.
        Ok(())
    }

    async fn clear(&self) -> IndexResult<()> {
        // A filter without conditions matches every point. The collection
        // itself (configuration, payload indexes) stays.
        self.delete_where("clear", Filter::default()).await?;
        let left = self.count().await?;
        if left > 0 {
            return Err(IndexError::Vector(format!(
                "clear left {left} points in Qdrant collection {:?}",
                self.collection
            )));
        }
        Ok(())
    }
}

/// A short, secret-free description (the client's own `Display` adds the
/// response metadata).
fn describe(e: &QdrantError) -> String {
    match e {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    }
}

/// How long the server asks to wait (zero for "use the backoff") when `e`
/// is worth retrying; `None` when it is not (a bad request, a missing
/// collection, a rejected key: retrying changes nothing).
fn transient_wait(e: &QdrantError) -> Option<Duration> {
    match e {
        QdrantError::ResourceExhaustedError {
            retry_after_seconds,
            ..
        } => Some(Duration::from_secs(*retry_after_seconds)),
        QdrantError::ResponseError { status } => match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted => Some(Duration::ZERO),
            // tonic reports its own request timeout as `Cancelled`.
            Code::Cancelled => Some(Duration::ZERO),
            // The client reports a failed connection attempt as `Internal`.
            Code::Internal if status.message().starts_with("Failed to connect") => {
                Some(Duration::ZERO)
            }
            _ => None,
        },
        QdrantError::Io(_) => Some(Duration::ZERO),
        _ => None,
    }
}

/// `base`, doubled per earlier attempt, with up to a quarter of jitter so
/// clients that failed together do not retry together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.25);
    exp.saturating_add(jitter)
}

fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.trim().parse().ok()?;
    let minor = parts.next()?.trim().parse().ok()?;
    Some((major, minor))
}

/// Points whose `collection_id` is any of `collections`.
fn collections_filter(collections: &[CollectionId]) -> Filter {
    let values: Vec<String> = collections.iter().map(|c| c.to_string()).collect();
    Filter::must([Condition::matches(COLLECTION_FIELD, values)])
}

fn point_id(uuid: Uuid) -> PointId {
    PointId::from(uuid.to_string())
}

/// The stored point: the same id and payload as in the embedded shard.
fn to_point(point: VectorPoint) -> IndexResult<PointStruct> {
    let id = point
        .chunk_id
        .to_uuid()
        .ok_or_else(|| IndexError::Vector(format!("chunk id {} is not a UUID", point.chunk_id)))?;
    let payload: HashMap<&str, Value> = HashMap::from([
        (
            COLLECTION_FIELD,
            Value::from(point.collection_id.to_string()),
        ),
        (DOCUMENT_FIELD, Value::from(point.document_id.to_string())),
    ]);
    let vectors: HashMap<String, Vec<f32>> =
        HashMap::from([(VECTOR_NAME.to_owned(), point.vector)]);
    Ok(PointStruct::new(point_id(id), vectors, payload))
}

fn point_uuid(id: PointId) -> Option<Uuid> {
    match id.point_id_options? {
        PointIdOptions::Uuid(text) => Uuid::parse_str(&text).ok(),
        PointIdOptions::Num(num) => {
            tracing::warn!(point_id = num, "skipping vector point with a numeric id");
            None
        }
    }
}

fn payload_uuid(payload: &HashMap<String, Value>, field: &str) -> Option<Uuid> {
    match &payload.get(field)?.kind {
        Some(Kind::StringValue(s)) => Uuid::parse_str(s).ok(),
        _ => None,
    }
}

fn to_hit(point: ScoredPoint) -> Option<Hit> {
    let chunk_id = point_uuid(point.id?)?;
    let ids = payload_uuid(&point.payload, DOCUMENT_FIELD)
        .zip(payload_uuid(&point.payload, COLLECTION_FIELD));
    Hit::from_point(chunk_id, ids, point.score)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::contract::{self, sorted, Seed, DIM};
    use crate::index::testing::{self, TestCollection};
    use qdrant_client::qdrant::PayloadSchemaType;

    /// A collection of its own on the test server, or `None` (the test says
    /// it is skipped and passes) when no server is configured.
    fn server() -> Option<TestCollection> {
        let Some(url) = testing::qdrant_url() else {
            eprintln!(
                "skipped: set {} to run the Qdrant server tests",
                testing::QDRANT_ENV
            );
            return None;
        };
        Some(TestCollection::new(&url, "ragchat_unit"))
    }

    async fn open(coll: &TestCollection) -> ServerVectorIndex {
        match ServerVectorIndex::open(&coll.settings(), DIM).await {
            Ok(index) => index,
            Err(e) => panic!("open failed: {e}"),
        }
    }

    #[tokio::test]
    async fn creates_the_collection_and_refuses_another_dimension_or_distance() {
        let Some(coll) = server() else { return };
        let index = open(&coll).await;
        let info = coll
            .client()
            .collection_info(&coll.name)
            .await
            .unwrap()
            .result
            .unwrap();
        let Some(vectors_config::Config::ParamsMap(map)) = info
            .config
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
        else {
            panic!("expected named vectors");
        };
        let params = map.map.get(VECTOR_NAME).unwrap();
        assert_eq!(params.size, DIM as u64);
        assert_eq!(params.distance(), Distance::Cosine);
        for field in [COLLECTION_FIELD, DOCUMENT_FIELD] {
            let schema = info.payload_schema.get(field).unwrap();
            assert_eq!(schema.data_type(), PayloadSchemaType::Keyword, "{field}");
        }

        // Reopening an existing collection keeps its points.
        let s = Seed::new();
        index.upsert(s.points()).await.unwrap();
        let again = open(&coll).await;
        assert_eq!(again.count().await.unwrap(), 3);

        let err = ServerVectorIndex::open(&coll.settings(), DIM + 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&coll.name), "{err}");
        assert!(
            err.contains("dimension 4") && err.contains("dimension 5"),
            "{err}"
        );
        assert_eq!(again.count().await.unwrap(), 3);

        let dot = TestCollection::new(&coll.url, "ragchat_unit_dot");
        let params = VectorParamsBuilder::new(DIM as u64, Distance::Dot).build();
        dot.client()
            .create_collection(CreateCollectionBuilder::new(&dot.name).vectors_config(
                VectorsConfig {
                    config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                        map: HashMap::from([(VECTOR_NAME.to_owned(), params)]),
                    })),
                },
            ))
            .await
            .unwrap();
        let err = ServerVectorIndex::open(&dot.settings(), DIM)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("Dot") && err.contains("Cosine"), "{err}");
    }

    #[tokio::test]
    async fn search_is_filtered_by_collection_and_ordered_by_similarity() {
        let Some(coll) = server() else { return };
        contract::search_is_filtered_by_collection_and_ordered_by_similarity(&open(&coll).await)
            .await;
    }

    #[tokio::test]
    async fn delete_delete_collection_count_and_chunk_ids() {
        let Some(coll) = server() else { return };
        contract::delete_delete_collection_count_and_chunk_ids(&open(&coll).await).await;
    }

    #[tokio::test]
    async fn clear_empties_but_keeps_the_index_usable() {
        let Some(coll) = server() else { return };
        contract::clear_empties_but_keeps_the_index_usable(&open(&coll).await).await;
    }

    #[tokio::test]
    async fn batched_upsert_paged_ids_and_optimize_after_deletes() {
        let Some(coll) = server() else { return };
        let index = open(&coll).await;
        let kept = contract::batched_upsert_paged_ids_and_optimize_after_deletes(&index).await;
        // Another client of the same collection (another node) sees it all.
        let other = open(&coll).await;
        assert_eq!(sorted(other.chunk_ids().await.unwrap()), kept);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_then_reported() {
        let settings = VectorSettings {
            // Port 1 on loopback: refused at once.
            qdrant_url: "http://127.0.0.1:1".to_owned(),
            qdrant_max_retries: 2,
            qdrant_retry_backoff_ms: 10,
            ..VectorSettings::default()
        };
        let err = ServerVectorIndex::open(&settings, DIM).await.unwrap_err();
        let err = err.to_string();
        assert!(err.contains("127.0.0.1:1"), "{err}");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        use tonic::Status;
        let status = |s: Status| QdrantError::ResponseError { status: s };
        for transient in [
            Status::unavailable("down"),
            Status::deadline_exceeded("slow"),
            Status::resource_exhausted("busy"),
            Status::cancelled("Timeout expired"),
            Status::internal("Failed to connect to http://x: refused"),
        ] {
            let e = status(transient);
            assert!(transient_wait(&e).is_some(), "{e}");
        }
        for permanent in [
            Status::invalid_argument("wrong dimension"),
            Status::not_found("no collection"),
            Status::permission_denied("bad key"),
            Status::unauthenticated("no key"),
            Status::internal("assertion failed"),
        ] {
            let e = status(permanent);
            assert!(transient_wait(&e).is_none(), "{e}");
        }
        let asked = QdrantError::ResourceExhaustedError {
            status: Status::resource_exhausted("rate limited"),
            retry_after_seconds: 3,
        };
        assert_eq!(transient_wait(&asked), Some(Duration::from_secs(3)));
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 0..4 {
            let wait = backoff(base, attempt);
            let exp = base * (1 << attempt);
            assert!(
                wait >= exp && wait <= exp.mul_f64(1.25),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn server_versions_are_parsed() {
        assert_eq!(parse_version("1.18.3"), Some((1, 18)));
        assert_eq!(parse_version("1.19.0-dev"), Some((1, 19)));
        assert_eq!(parse_version("dev"), None);
    }
}
