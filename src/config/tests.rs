//! Loading: the layers, their precedence and errors that name the key.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let s = Settings::load(None, false, env(&[])).unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.sqlite_path().unwrap(), PathBuf::from("./data/ragchat.db"));
}

#[test]
fn env_overrides_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ragchat.toml");
    std::fs::write(
        &file,
        "data_dir = \"/srv/x\"\n[retrieval]\nrrf_k = 30.0\ncandidates = 50\n",
    )
    .unwrap();
    let s = Settings::load(
        Some(&file),
        true,
        env(&[
            ("RAGCHAT_RETRIEVAL_CANDIDATES", "70"),
            ("RAGCHAT_BIND", "0.0.0.0:9000"),
            ("RAGCHAT_CHUNKING_OVERLAP_TOKENS", "10"),
            ("UNRELATED", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(s.data_dir, PathBuf::from("/srv/x"));
    assert_eq!(s.retrieval.rrf_k, 30.0);
    assert_eq!(s.retrieval.candidates, 70);
    assert_eq!(s.server.bind, "0.0.0.0:9000");
    assert_eq!(s.chunking.overlap_tokens, 10);
}

#[test]
fn errors_name_the_key() {
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            env(&[("RAGCHAT_RETRIEVAL_CANDIDATES", "many")]),
            "retrieval.candidates",
        ),
        (env(&[("RAGCHAT_BIND", "nowhere")]), "server.bind"),
        (
            env(&[("RAGCHAT_CHUNKING_OVERLAP_TOKENS", "500")]),
            "chunking",
        ),
        (
            env(&[("RAGCHAT_DATABASE_URL", "mysql://x")]),
            "database.url",
        ),
        (env(&[("RAGCHAT_LOG_FORMAT", "xml")]), "log.format"),
        (
            env(&[("RAGCHAT_QDRANT_URL", "localhost:6334")]),
            "vector.qdrant_url",
        ),
        (
            env(&[("RAGCHAT_VECTOR_QDRANT_COLLECTION", "a/b")]),
            "vector.qdrant_collection",
        ),
        (
            env(&[("RAGCHAT_VECTOR_QDRANT_TIMEOUT_SECS", "0")]),
            "vector.qdrant_timeout_secs",
        ),
        (env(&[("RAGCHAT_RETRIEVAL_RRF_K", "-1")]), "retrieval.rrf_k"),
        (
            env(&[("RAGCHAT_EMBEDDING_BATCH_SIZE", "0")]),
            "embedding.batch_size",
        ),
        (
            env(&[("RAGCHAT_RETRIEVAL_NOPE", "1")]),
            "RAGCHAT_RETRIEVAL_NOPE",
        ),
    ];
    for (vars, key) in cases {
        let err = Settings::load(None, false, vars.clone()).unwrap_err();
        assert!(
            err.to_string().contains(key),
            "{vars:?}: error `{err}` should name `{key}`"
        );
    }
}

#[test]
fn file_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ragchat.toml");
    std::fs::write(&file, "[retrieval]\ncandidatez = 3\n").unwrap();
    let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
    assert!(err.to_string().contains("retrieval.candidatez"), "{err}");

    std::fs::write(&file, "[retrieval]\ncandidates = \"x\"\n").unwrap();
    let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
    assert!(err.to_string().contains("retrieval.candidates"), "{err}");

    std::fs::write(&file, "not toml [").unwrap();
    let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
    assert!(matches!(err, ConfigError::File { .. }), "{err}");
}

#[test]
fn missing_file_is_an_error_only_when_named() {
    let missing = Path::new("/nonexistent/ragchat.toml");
    assert!(Settings::load(Some(missing), false, env(&[])).is_ok());
    assert!(Settings::load(Some(missing), true, env(&[])).is_err());
}

#[test]
fn choices_keep_their_documented_spellings() {
    let tree = toml::Table::try_from(Settings::default()).unwrap();
    assert_eq!(tree["chat"]["backend"].as_str(), Some("auto"));
    assert_eq!(tree["auth"]["registration"].as_str(), Some("admin_only"));
    assert_eq!(tree["log"]["format"].as_str(), Some("text"));

    let s = Settings::load(
        None,
        false,
        env(&[
            ("RAGCHAT_CHAT_BACKEND", "openai"),
            ("RAGCHAT_LLM_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("RAGCHAT_LLM_MODEL", "m"),
            ("RAGCHAT_AUTH_REGISTRATION", "open"),
            ("RAGCHAT_LOG_FORMAT", "json"),
        ]),
    )
    .unwrap();
    assert_eq!(s.chat.backend, ChatBackend::OpenAi);
    assert_eq!(s.auth.registration, Registration::Open);
    assert_eq!(s.log.format, LogFormat::Json);

    for (spelling, backend) in [
        ("auto", ChatBackend::Auto),
        ("extractive", ChatBackend::Extractive),
        ("openai", ChatBackend::OpenAi),
        ("local", ChatBackend::Local),
    ] {
        let parsed: ChatBackend = toml::Value::String(spelling.into()).try_into().unwrap();
        assert_eq!(parsed, backend);
    }
    let parsed: Registration = toml::Value::String("admin_only".into()).try_into().unwrap();
    assert_eq!(parsed, Registration::AdminOnly);
    let parsed: LogFormat = toml::Value::String("text".into()).try_into().unwrap();
    assert_eq!(parsed, LogFormat::Text);
}

#[test]
fn bad_choice_in_the_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ragchat.toml");
    for (text, key) in [
        ("[chat]\nbackend = \"gpt\"\n", "chat.backend"),
        ("[auth]\nregistration = \"closed\"\n", "auth.registration"),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        // Spellings are exact: no case folding, no serde's own `open_ai`.
        ("[chat]\nbackend = \"open_ai\"\n", "chat.backend"),
        ("[log]\nformat = \"JSON\"\n", "log.format"),
    ] {
        std::fs::write(&file, text).unwrap();
        let err = Settings::load(Some(&file), true, env(&[])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{text:?}: error `{err}` should name `{key}`"
        );
    }
}

#[test]
fn bad_choice_in_the_env_names_the_key() {
    for (var, value, key) in [
        ("RAGCHAT_CHAT_BACKEND", "gpt", "chat.backend"),
        ("RAGCHAT_AUTH_REGISTRATION", "closed", "auth.registration"),
        ("RAGCHAT_LOG_FORMAT", "xml", "log.format"),
    ] {
        let err = Settings::load(None, false, env(&[(var, value)])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{var}={value}: error `{err}` should name `{key}`"
        );
        assert!(err.to_string().contains(value), "{err}");
    }
}

#[test]
fn local_backend_needs_the_feature() {
    let s = Settings::load(None, false, env(&[("RAGCHAT_CHAT_BACKEND", "local")]));
    if cfg!(feature = "local-llm") {
        assert_eq!(s.unwrap().chat.backend, ChatBackend::Local);
    } else {
        let err = s.unwrap_err();
        assert!(err.to_string().contains("chat.backend"), "{err}");
    }
}

#[test]
fn lists_come_from_the_environment_comma_separated() {
    let s = Settings::load(
        None,
        false,
        env(&[(
            "RAGCHAT_RATE_LIMIT_TRUSTED_PROXIES",
            "10.0.0.0/8, 192.168.1.1,fd00::/8",
        )]),
    )
    .unwrap();
    let nets: Vec<String> = s
        .rate_limit
        .trusted_proxies
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "192.168.1.1/32", "fd00::/8"]);
    let err = Settings::load(
        None,
        false,
        env(&[(
            "RAGCHAT_RATE_LIMIT_TRUSTED_PROXIES",
            "10.0.0.0/8,proxy.local",
        )]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("rate_limit.trusted_proxies") && err.contains("proxy.local"),
        "{err}"
    );
}

#[test]
fn a_qdrant_server_is_chosen_by_its_url() {
    let s = Settings::load(None, false, env(&[])).unwrap();
    assert!(!s.vector.uses_server());
    assert_eq!(s.vector.qdrant_collection, "ragchat_chunks");
    let s = Settings::load(
        None,
        false,
        env(&[
            ("RAGCHAT_QDRANT_URL", "http://127.0.0.1:6334"),
            ("RAGCHAT_QDRANT_API_KEY", "secret"),
            ("RAGCHAT_VECTOR_QDRANT_COLLECTION", "chunks-2"),
            ("RAGCHAT_VECTOR_QDRANT_MAX_RETRIES", "5"),
        ]),
    )
    .unwrap();
    assert!(s.vector.uses_server());
    assert_eq!(s.vector.qdrant_url, "http://127.0.0.1:6334");
    assert_eq!(s.vector.qdrant_api_key, "secret");
    assert_eq!(s.vector.qdrant_collection, "chunks-2");
    assert_eq!(s.vector.qdrant_max_retries, 5);
}
