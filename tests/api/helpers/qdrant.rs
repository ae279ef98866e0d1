//! The Qdrant server for the black-box suite. With `RAGCHAT_TEST_QDRANT_URL`
//! set to its gRPC URL, every `TestDir` owns a collection of its own there
//! (`ragchat::index::testing::TestCollection`, the unit tests' helper too),
//! deleted with it, and every `ragchat` command for that directory keeps its
//! vectors in that collection.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ragchat::config::VectorSettings;
use ragchat::ids::{ChunkId, CollectionId, DocumentId};
use ragchat::index::server::ServerVectorIndex;
use ragchat::index::testing::TestCollection;
pub use ragchat::index::testing::{qdrant_url as server_url, QDRANT_ENV as ENV};
use ragchat::index::{VectorIndex, VectorPoint};

/// True (after saying so) when no Qdrant server is configured, for tests
/// that need one and skip themselves without it.
pub fn skip_without_server() -> bool {
    if server_url().is_some() {
        return false;
    }
    eprintln!("skipped: set {ENV} to a Qdrant server's gRPC URL to run this test");
    true
}

/// Live collections by the `TestDir` path they belong to (matched by
/// ancestor, like the databases).
static COLLECTIONS: Mutex<Vec<(PathBuf, String, String)>> = Mutex::new(Vec::new());

fn registry() -> std::sync::MutexGuard<'static, Vec<(PathBuf, String, String)>> {
    COLLECTIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// (server URL, collection name) of the `TestDir` that contains `data_dir`.
pub fn collection_for(data_dir: &Path) -> Option<(String, String)> {
    registry()
        .iter()
        .find(|(dir, _, _)| data_dir.starts_with(dir))
        .map(|(_, url, name)| (url.clone(), name.clone()))
}

/// A collection named for one `TestDir`, deleted on drop.
pub struct Collection {
    dir: PathBuf,
    // Dropped after the registry entry is gone.
    _collection: TestCollection,
}

impl Collection {
    pub fn create(url: &str, dir: &Path) -> Self {
        let collection = TestCollection::new(url, "ragchat_test");
        registry().push((
            dir.to_path_buf(),
            collection.url.clone(),
            collection.name.clone(),
        ));
        Self {
            dir: dir.to_path_buf(),
            _collection: collection,
        }
    }
}

impl Drop for Collection {
    fn drop(&mut self) {
        registry().retain(|(dir, _, _)| dir != &self.dir);
    }
}

fn with_index<T>(data_dir: &Path, f: impl AsyncFnOnce(&ServerVectorIndex) -> T) -> T {
    let (url, name) = collection_for(data_dir).expect("data dir has a Qdrant collection");
    let settings = VectorSettings {
        qdrant_url: url,
        qdrant_collection: name,
        ..VectorSettings::default()
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let index = ServerVectorIndex::open(&settings, ragchat::embed::DIMENSION)
                .await
                .expect("open the test collection");
            f(&index).await
        })
}

/// The chunk ids stored in the collection of `data_dir`'s `TestDir`.
pub fn chunk_ids(data_dir: &Path) -> Vec<ChunkId> {
    with_index(data_dir, async |index| {
        index.chunk_ids().await.expect("chunk ids")
    })
}

/// Store points for `chunk_ids` in the collection of `data_dir`'s `TestDir`
/// whatever the database says, as a crash between steps could leave them.
pub fn plant(data_dir: &Path, chunk_ids: Vec<ChunkId>) {
    let points = chunk_ids
        .into_iter()
        .map(|chunk_id| VectorPoint {
            chunk_id,
            document_id: DocumentId::random(),
            collection_id: CollectionId::random(),
            vector: vec![1.0; ragchat::embed::DIMENSION],
        })
        .collect();
    with_index(data_dir, async |index| {
        index.upsert(points).await.expect("plant points")
    })
}

/// Create the collection of `data_dir`'s `TestDir` with `dim`-dimensional
/// cosine vectors, as another deployment (another model) could have left it.
pub fn create_with_dimension(data_dir: &Path, dim: u64) {
    use qdrant_client::qdrant::{
        vectors_config, CreateCollectionBuilder, Distance, VectorParamsBuilder, VectorParamsMap,
        VectorsConfig,
    };
    let (url, name) = collection_for(data_dir).expect("data dir has a Qdrant collection");
    let client = qdrant_client::Qdrant::from_url(&url)
        .skip_compatibility_check()
        .build()
        .expect("Qdrant client");
    let vectors = VectorsConfig {
        config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
            map: [(
                ragchat::index::edge::VECTOR_NAME.to_owned(),
                VectorParamsBuilder::new(dim, Distance::Cosine).build(),
            )]
            .into(),
        })),
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(
            client.create_collection(CreateCollectionBuilder::new(name).vectors_config(vectors)),
        )
        .expect("create collection");
}
