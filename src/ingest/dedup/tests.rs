use std::collections::HashSet;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

/// A vocabulary of pseudo-words, so random texts share words but almost
/// never a 5-word shingle.
fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let len = rng.random_range(2..9);
            (0..len)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect()
        })
        .collect()
}

fn random_words(rng: &mut StdRng, vocab: &[String], n: usize) -> Vec<String> {
    (0..n)
        .map(|_| vocab[rng.random_range(0..vocab.len())].clone())
        .collect()
}

fn true_jaccard(hasher: &MinHasher, a: &str, b: &str) -> f64 {
    let sa: HashSet<u64> = hasher.shingle_hashes(a).into_iter().collect();
    let sb: HashSet<u64> = hasher.shingle_hashes(b).into_iter().collect();
    sa.intersection(&sb).count() as f64 / sa.union(&sb).count() as f64
}

#[test]
fn words_ignore_case_punctuation_and_split_unspaced_scripts() {
    assert_eq!(
        normalized_words("Hello, WORLD! Straße—x2 «ÉTÉ»"),
        ["hello", "world", "straße", "x2", "été"]
    );
    assert_eq!(
        normalized_words("東京タワー is tall"),
        ["東", "京", "タ", "ワ", "ー", "is", "tall"]
    );
    assert!(normalized_words(" -- !! ").is_empty());
}

#[test]
fn normalized_hash_is_case_punctuation_and_space_insensitive() {
    // SHA-256 of "hello world".
    let want = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
    assert_eq!(normalized_hash("hello world"), want);
    assert_eq!(normalized_hash("  Hello,\n\nWORLD!  "), want);
    assert_ne!(normalized_hash("hello worlds"), want);
}

#[test]
fn jaccard_estimate_within_a_tenth_of_true_jaccard() {
    let mut rng = StdRng::seed_from_u64(7);
    let vocab = vocabulary(&mut rng, 3000);
    let hasher = MinHasher::default();
    let mut covered = Vec::new();
    for replace_every in [1usize, 2, 3, 5, 8, 13, 25, 60, 150, 1000] {
        let a = random_words(&mut rng, &vocab, 400);
        let mut b = a.clone();
        for i in (0..b.len()).step_by(replace_every) {
            b[i] = format!("zz{i}");
        }
        let (a, b) = (a.join(" "), b.join(" "));
        let truth = true_jaccard(&hasher, &a, &b);
        let est = hasher.signature(&a).jaccard_estimate(&hasher.signature(&b));
        assert!(
            (est - truth).abs() <= 0.1,
            "every {replace_every}th word replaced: true {truth:.3}, estimate {est:.3}"
        );
        covered.push(truth);
    }
    // The pairs span the whole range, not just the easy ends.
    assert!(covered.iter().any(|j| *j < 0.05));
    assert!(covered.iter().any(|j| (0.3..0.7).contains(j)));
    assert!(covered.iter().any(|j| *j > 0.9));
}

#[test]
fn signature_is_stable_across_versions() {
    // Pinned values: a failure means stored signatures no longer compare
    // with new ones, which needs a new SIGNATURE_VERSION and a migration.
    let sig = MinHasher::default()
        .signature("The quick brown fox jumps over the lazy dog while the cat sleeps.");
    assert_eq!(sig.num_perm(), 128);
    assert_eq!(sig.shingle_size(), 5);
    assert_eq!(&sig.values()[..4], &PINNED[..]);
    let short = MinHasher::default().signature("hello world");
    assert_eq!(short.values()[0], PINNED_SHORT);
}

// Also reproduced by an independent Python implementation of the module notes.
const PINNED: [u64; 4] = [
    759716945609312959,
    2289746046032125123,
    550518749707774059,
    1682837081869719913,
];
const PINNED_SHORT: u64 = 17030592050629378802;

#[test]
fn signature_round_trips_through_bytes_and_base64() {
    let sig = MinHasher::new(64, 3)
        .unwrap()
        .signature("a small text about round trips of signatures");
    let bytes = sig.to_bytes();
    assert_eq!(bytes.len(), 6 + 64 * 8);
    assert_eq!(&bytes[..4], &[b'M', b'H', 1, 3]);
    assert_eq!(MinHashSignature::from_bytes(&bytes).unwrap(), sig);
    assert_eq!(
        MinHashSignature::from_base64(&sig.to_base64()).unwrap(),
        sig
    );

    let mut wrong_version = bytes.clone();
    wrong_version[2] = 2;
    assert!(MinHashSignature::from_bytes(&wrong_version).is_err());
    assert!(MinHashSignature::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(MinHashSignature::from_bytes(b"XX\x01\x05\x01\x00").is_err());
    assert!(MinHashSignature::from_base64("not base64!").is_err());
}

#[test]
fn empty_and_short_texts() {
    let hasher = MinHasher::default();
    assert!(hasher.signature("").is_empty());
    assert!(hasher.signature(" ... ").is_empty());
    let short = hasher.signature("Hello world");
    assert!(!short.is_empty());
    assert_eq!(short, hasher.signature("hello, world!"));
    assert_eq!(
        short.jaccard_estimate(&hasher.signature("hello there")),
        0.0
    );
    // Signatures of other shapes do not compare.
    let other = MinHasher::new(128, 3).unwrap().signature("Hello world");
    assert_eq!(short.jaccard_estimate(&other), 0.0);
}

#[test]
fn band_choice_follows_the_pigeonhole_rule() {
    let lsh = LshIndex::new(0.9, 128).unwrap();
    assert_eq!((lsh.bands(), lsh.rows()), (13, 9));
    assert!(lsh.candidate_probability(0.9) > 0.99);
    assert!(lsh.candidate_probability(0.3) < 1e-3);
    let lsh = LshIndex::new(0.8, 128).unwrap();
    assert_eq!((lsh.bands(), lsh.rows()), (26, 4));
    let lsh = LshIndex::new(1.0, 128).unwrap();
    assert_eq!((lsh.bands(), lsh.rows()), (1, 128));
    assert!(LshIndex::new(0.0, 128).is_err());
    assert!(LshIndex::new(1.1, 128).is_err());
    assert!(LshIndex::new(0.9, 0).is_err());
    assert!(LshIndex::with_bands(0.9, 128, 10, 13).is_err());
}

/// A signature agreeing with `base` in exactly the positions of `same`.
fn variant(rng: &mut StdRng, base: &MinHashSignature, same: &HashSet<usize>) -> MinHashSignature {
    let values = base
        .values()
        .iter()
        .enumerate()
        .map(|(i, v)| if same.contains(&i) { *v } else { rng.random() })
        .collect();
    MinHashSignature::from_values(5, values)
}

#[test]
fn threshold_boundary_is_exact() {
    let mut rng = StdRng::seed_from_u64(11);
    let base = MinHashSignature::from_values(5, (0..128).map(|_| rng.random()).collect());
    let mut lsh = LshIndex::new(0.9, 128).unwrap();
    // 0.9 × 128 = 115.2: 116 agreeing values (0.906) pass, 115 (0.898) do not,
    // wherever the disagreements fall.
    let mut expected = Vec::new();
    for n in 0..400 {
        let agree = 108 + n % 21; // 108..=128
        let mut positions: Vec<usize> = (0..128).collect();
        for i in 0..128 {
            positions.swap(i, rng.random_range(i..128));
        }
        let same: HashSet<usize> = positions[..agree].iter().copied().collect();
        let id = format!("d{n:03}");
        lsh.insert(id.clone(), &variant(&mut rng, &base, &same))
            .unwrap();
        if agree >= 116 {
            expected.push((id, agree as f64 / 128.0));
        }
    }
    let mut got = lsh.query(&base);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, expected);
    assert!(got.iter().all(|(_, s)| *s >= 0.9));

    // A threshold that is an exact share includes the boundary.
    let mut half = LshIndex::new(0.5, 128).unwrap();
    let same: HashSet<usize> = (0..64).collect();
    half.insert("half".into(), &variant(&mut rng, &base, &same))
        .unwrap();
    assert_eq!(half.query(&base), vec![("half".to_string(), 0.5)]);
}

#[test]
fn query_orders_by_similarity_and_remove_forgets() {
    let hasher = MinHasher::default();
    let mut rng = StdRng::seed_from_u64(3);
    let vocab = vocabulary(&mut rng, 2000);
    let words = random_words(&mut rng, &vocab, 300);
    let mut one = words.clone();
    one[150] = "changed".into();
    let mut two = one.clone();
    two[40] = "again".into();
    let mut lsh = LshIndex::new(0.9, 128).unwrap();
    lsh.insert("two".into(), &hasher.signature(&two.join(" ")))
        .unwrap();
    lsh.insert("one".into(), &hasher.signature(&one.join(" ")))
        .unwrap();
    let got = lsh.query(&hasher.signature(&words.join(" ")));
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );
    assert!(got[0].1 >= got[1].1);
    assert!(lsh.remove("one"));
    assert!(!lsh.remove("one"));
    assert_eq!(lsh.len(), 1);
    let got = lsh.query(&hasher.signature(&words.join(" ")));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "two");
    // Re-inserting an id replaces its signature, and freed slots are reused.
    lsh.insert(
        "two".into(),
        &hasher.signature("something else entirely, five words or more"),
    )
    .unwrap();
    lsh.insert("three".into(), &hasher.signature(&one.join(" ")))
        .unwrap();
    assert_eq!(lsh.len(), 2);
    let got = lsh.query(&hasher.signature(&words.join(" ")));
    assert_eq!(
        got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(),
        ["three"]
    );
    let short = MinHashSignature::from_values(5, vec![1, 2, 3]);
    assert!(lsh.query(&short).is_empty());
    assert!(lsh.insert("bad".into(), &short).is_err());
}

#[test]
fn lsh_finds_the_near_duplicate_among_10k_documents() {
    let mut rng = StdRng::seed_from_u64(42);
    let vocab = vocabulary(&mut rng, 20_000);
    let hasher = MinHasher::default();
    let mut lsh = LshIndex::new(0.9, 128).unwrap();
    let started = Instant::now();
    let mut target = Vec::new();
    for n in 0..10_000 {
        let words = random_words(&mut rng, &vocab, 120);
        if n == 6_789 {
            target = words.clone();
        }
        lsh.insert(format!("doc{n}"), &hasher.signature(&words.join(" ")))
            .unwrap();
    }
    let built = started.elapsed();
    target[60] = "edited".into();
    let started = Instant::now();
    let got = lsh.query(&hasher.signature(&target.join(" ")));
    let queried = started.elapsed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "doc6789");
    assert!(got[0].1 >= 0.9);
    // Far documents: a fresh random text and a half-changed copy.
    assert!(lsh
        .query(&hasher.signature(&random_words(&mut rng, &vocab, 120).join(" ")))
        .is_empty());
    for w in target.iter_mut().step_by(2) {
        *w = "x".into();
    }
    assert!(lsh.query(&hasher.signature(&target.join(" "))).is_empty());
    println!("10k documents indexed in {built:?}, one query in {queried:?}");
}

#[test]
fn deduplicator_verdicts() {
    let mut rng = StdRng::seed_from_u64(5);
    let vocab = vocabulary(&mut rng, 5000);
    let text = random_words(&mut rng, &vocab, 300);
    let original = text.join(" ");
    let mut d = Deduplicator::new(&DedupSettings::default()).unwrap();
    assert_eq!(d.check(&original, None), Verdict::Unique);
    d.add("orig".into(), d.fingerprint(&original)).unwrap();

    // Identical text, and the same text with other case and punctuation.
    assert_eq!(
        d.check(&original, None),
        Verdict::ExactDuplicate { of: "orig".into() }
    );
    assert_eq!(
        d.check(&format!("{}!", original.to_uppercase()), None),
        Verdict::ExactDuplicate { of: "orig".into() }
    );

    // One changed word in 300.
    let mut edited = text.clone();
    edited[123] = "different".into();
    match d.check(&edited.join(" "), None) {
        Verdict::NearDuplicate { of, similarity } => {
            assert_eq!(of, "orig");
            assert!(similarity >= 0.9, "{similarity}");
        }
        v => panic!("expected a near duplicate, got {v:?}"),
    }

    // Unrelated text.
    let other = random_words(&mut rng, &vocab, 300).join(" ");
    assert_eq!(d.check(&other, None), Verdict::Unique);
    assert_eq!(d.check("", None), Verdict::Unique);
}

#[test]
fn deduplicator_excludes_the_document_itself() {
    let mut rng = StdRng::seed_from_u64(9);
    let vocab = vocabulary(&mut rng, 5000);
    let text = random_words(&mut rng, &vocab, 200);
    let original = text.join(" ");
    let mut d = Deduplicator::new(&DedupSettings::default()).unwrap();
    d.add("a".into(), d.fingerprint(&original)).unwrap();

    // Re-uploading the same or a slightly edited version under its own id.
    assert_eq!(d.check(&original, Some("a")), Verdict::Unique);
    let mut edited = text.clone();
    edited[10] = "tweak".into();
    let edited = edited.join(" ");
    assert_eq!(d.check(&edited, Some("a")), Verdict::Unique);

    // Replacing "a" moves its hash: the old text is free again.
    d.add("a".into(), d.fingerprint(&edited)).unwrap();
    assert_eq!(d.len(), 1);
    assert!(matches!(
        d.check(&original, None),
        Verdict::NearDuplicate { ref of, .. } if of == "a"
    ));
    assert_eq!(
        d.check(&edited, None),
        Verdict::ExactDuplicate { of: "a".into() }
    );

    // Another copy is still reported while its sibling re-uploads.
    d.add("b".into(), d.fingerprint(&edited)).unwrap();
    assert_eq!(
        d.check(&edited, Some("a")),
        Verdict::ExactDuplicate { of: "b".into() }
    );
    assert_eq!(
        d.check(&edited, Some("b")),
        Verdict::ExactDuplicate { of: "a".into() }
    );
    assert!(d.remove("a"));
    assert!(!d.remove("a"));
    assert_eq!(d.check(&edited, Some("b")), Verdict::Unique);
}

#[test]
fn deduplicator_rebuilds_from_stored_fingerprints() {
    let settings = DedupSettings::default();
    let hasher = MinHasher::default();
    let texts = [
        "First stored document with enough words to shingle.",
        "Second stored document, also long enough for shingles.",
    ];
    let rows: Vec<(String, String, MinHashSignature)> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let stored = hasher.signature(t).to_base64();
            (
                format!("id{i}"),
                normalized_hash(t),
                MinHashSignature::from_base64(&stored).unwrap(),
            )
        })
        .collect();
    let d = Deduplicator::from_existing(&settings, rows).unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(
        d.check(texts[1], None),
        Verdict::ExactDuplicate { of: "id1".into() }
    );

    let wrong = MinHasher::new(64, 5).unwrap().signature(texts[0]);
    let err = Deduplicator::from_existing(
        &settings,
        [("x".to_string(), normalized_hash(texts[0]), wrong)],
    )
    .unwrap_err();
    assert!(matches!(err, DedupError::Incompatible { .. }), "{err}");
    assert!(Deduplicator::new(&DedupSettings {
        threshold: 0.0,
        ..DedupSettings::default()
    })
    .is_err());
}

/// Near-duplicate pairs in the evaluation corpora at the default
/// threshold, through the Deduplicator as ingestion would use it (check,
/// then add), cross-checked by brute force.
#[test]
fn near_duplicate_pairs_in_eval_corpora() {
    for name in ["scifact-train", "cranfield", "adi"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../shared/eval/{name}/corpus.jsonl"));
        if path.exists() {
            near_duplicate_pairs(name, &path);
        } else {
            println!("note: {} is absent; skipped", path.display());
        }
    }
}

fn near_duplicate_pairs(name: &str, path: &std::path::Path) {
    let docs = crate::ingest::formats::beir::load_corpus(path).unwrap();
    let started = Instant::now();
    let texts: Vec<(String, String)> = docs
        .into_iter()
        .map(|d| (d.id, crate::ingest::clean::clean_text(&d.text)))
        .collect();
    let settings = DedupSettings::default();
    let mut d = Deduplicator::new(&settings).unwrap();
    let mut lsh = LshIndex::new(settings.threshold, settings.num_perm).unwrap();
    let (mut exact, mut near, mut pairs) = (0, 0, 0);
    for (id, text) in &texts {
        let fp = d.fingerprint(text);
        match d.check_fingerprint(&fp, None) {
            Verdict::Unique => {}
            Verdict::ExactDuplicate { of } => {
                exact += 1;
                println!("  exact: {id} = {of}");
            }
            Verdict::NearDuplicate { of, similarity } => {
                near += 1;
                println!("  near: {id} ~ {of} ({similarity:.3})");
            }
        }
        // All pairs, not only the best match per document.
        pairs += lsh.query(&fp.signature).len();
        lsh.insert(id.clone(), &fp.signature).unwrap();
        d.add(id.clone(), fp).unwrap();
    }
    let took = started.elapsed();
    println!(
        "{name}: {} documents, {exact} exact duplicates, {near} near duplicates, \
         {pairs} pairs at >= {} (estimated Jaccard of word 5-grams), in {took:?}",
        texts.len(),
        settings.threshold
    );
    // Cross-check against a brute-force scan, and show what lower
    // thresholds would catch.
    let started = Instant::now();
    let sigs: Vec<MinHashSignature> = texts.iter().map(|(_, t)| d.hasher().signature(t)).collect();
    let mut at = [0usize; 4];
    let mut best = (0.0f64, 0, 0);
    for i in 0..sigs.len() {
        for j in i + 1..sigs.len() {
            let s = sigs[i].jaccard_estimate(&sigs[j]);
            for (k, t) in [0.3, 0.5, 0.8, 0.9].iter().enumerate() {
                if s >= *t {
                    at[k] += 1;
                }
            }
            if s > best.0 {
                best = (s, i, j);
            }
        }
    }
    let most_similar = if best.0 > 0.0 {
        format!("{} ~ {} ({:.3})", texts[best.1].0, texts[best.2].0, best.0)
    } else {
        "no pair shares a shingle".to_string()
    };
    println!(
        "  brute force in {:?}: pairs >= 0.3: {}, >= 0.5: {}, >= 0.8: {}, >= 0.9: {}; \
         most similar: {most_similar}",
        started.elapsed(),
        at[0],
        at[1],
        at[2],
        at[3],
    );
    assert_eq!(at[3], pairs);
    assert!(took.as_secs() < 60);
}

#[test]
fn verdict_serialises_with_a_kind_tag() {
    let v = Verdict::NearDuplicate {
        of: "x".into(),
        similarity: 0.95,
    };
    assert_eq!(
        serde_json::to_value(&v).unwrap(),
        serde_json::json!({"kind": "near_duplicate", "of": "x", "similarity": 0.95})
    );
    assert_eq!(
        serde_json::to_value(Verdict::Unique).unwrap(),
        serde_json::json!({"kind": "unique"})
    );
}
