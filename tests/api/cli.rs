//! Black-box tests of the command line: the real binary refusing a bad
//! configuration or missing models with a message that says what to fix.

use crate::helpers;
use crate::helpers::run;

#[test]
fn bad_config_exits_with_the_key_named() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let out = helpers::cmd(&data)
        .env("RAGCHAT_RETRIEVAL_RRF_K", "zero")
        .args(["check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retrieval.rrf_k"), "{err}");

    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[chunking]\nmax_tokens = 9999\n").unwrap();
    let out = run(&data, &["--config", cfg.to_str().unwrap(), "check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chunking.max_tokens"), "{err}");
}

#[test]
fn missing_models_is_a_clear_error() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let out = helpers::cmd(&data)
        .env("RAGCHAT_MODELS_DIR", dir.path().join("nomodels"))
        .env_remove("ORT_DYLIB_PATH")
        .args(["check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("scripts/setup-models.sh"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
