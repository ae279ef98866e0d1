//! `ragchat eval --tune` and `ragchat eval-answers` on a small BEIR set made
//! here: the sweep's report, the stored choice reaching searches of the
//! collection, and answers judged against the judgments.

use std::path::Path;

use serde_json::Value;

use crate::helpers;
use crate::helpers::run_ok;

/// Twelve short documents on four topics, eight questions with judgments.
fn write_set(dir: &Path, topics: &[(&str, [&str; 3])], questions: &[(&str, &str, &[usize])]) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    let mut corpus = String::new();
    let mut n = 0;
    for (title, texts) in topics {
        for text in texts {
            n += 1;
            corpus.push_str(
                &serde_json::json!({"_id": format!("d{n}"), "title": title, "text": text})
                    .to_string(),
            );
            corpus.push('\n');
        }
    }
    std::fs::write(dir.join("corpus.jsonl"), corpus).unwrap();
    let mut queries = String::new();
    let mut qrels = String::from("query-id\tcorpus-id\tscore\n");
    for (id, text, relevant) in questions {
        queries.push_str(&serde_json::json!({"_id": id, "text": text}).to_string());
        queries.push('\n');
        for d in *relevant {
            qrels.push_str(&format!("{id}\td{d}\t1\n"));
        }
    }
    std::fs::write(dir.join("queries.jsonl"), queries).unwrap();
    std::fs::write(dir.join("qrels/test.tsv"), qrels).unwrap();
}

fn aero(dir: &Path) {
    write_set(
        dir,
        &[
            ("Boundary layers", [
                "The boundary layer on a flat plate thickens downstream as viscous effects spread from the wall.",
                "Transition from laminar to turbulent boundary layer flow depends on the Reynolds number and surface roughness.",
                "Suction through a porous wall delays boundary layer separation on an airfoil.",
            ]),
            ("Shock waves", [
                "An oblique shock wave forms when supersonic flow meets a wedge.",
                "Across a normal shock the Mach number drops below one and pressure rises sharply.",
                "Shock wave and boundary layer interaction can cause separation at transonic speeds.",
            ]),
            ("Heat transfer", [
                "Aerodynamic heating of a re-entry vehicle is highest at the stagnation point.",
                "Ablative heat shields protect capsules by charring and carrying heat away.",
                "Convective heat transfer rises with the square root of the free stream density.",
            ]),
            ("Wings", [
                "Swept wings delay the drag rise near Mach one.",
                "Wing tip vortices carry induced drag and trail behind aircraft.",
                "Flaps raise the lift coefficient of a wing at low speed.",
            ]),
        ],
        &[
            ("q1", "why does the boundary layer get thicker along a plate", &[1]),
            ("q2", "what makes laminar flow become turbulent", &[2]),
            ("q3", "how to prevent flow separation with suction", &[3]),
            ("q4", "supersonic flow over a wedge makes what kind of shock", &[4]),
            ("q5", "pressure jump across a normal shock", &[5]),
            ("q6", "where is heating greatest on a reentry capsule", &[7]),
            ("q7", "how do ablative heat shields work", &[8]),
            ("q8", "why are wings swept back", &[10]),
        ],
    );
}

fn cooking(dir: &Path) {
    write_set(
        dir,
        &[(
            "Bread",
            [
                "Knead the dough for ten minutes until it is smooth and elastic.",
                "Sourdough starter needs flour and water fed daily.",
                "Bake the loaf at two hundred degrees until the crust is brown.",
            ],
        )],
        &[
            ("c1", "how long should dough be kneaded", &[1]),
            ("c2", "what does a sourdough starter eat", &[2]),
            ("c3", "best temperature to bake a loaf of bread", &[3]),
        ],
    );
}

#[test]
fn tune_reports_cross_validation_and_stores_the_choice() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let set = dir.path().join("aero");
    aero(&set);
    let out = run_ok(
        &data,
        &[
            "eval",
            set.to_str().unwrap(),
            "--tune",
            "--folds",
            "2",
            "--store",
            "--collection",
            "aero-eval",
        ],
    );
    for needle in [
        "plain rrf (k=60, 1:1)",
        "2-fold cross-validated choice",
        "best on all queries:",
        "fold 0 chose",
        "fold 1 chose",
        "best convex theoretical-min",
        "document aggregation",
        "stored on collection `aero-eval`",
    ] {
        assert!(out.contains(needle), "no `{needle}` in:\n{out}");
    }
    // The stored choice is what a search of the collection now uses.
    let stored = out
        .lines()
        .find_map(|l| l.split("stored on collection `aero-eval`: ").nth(1))
        .and_then(|l| l.split(" (searches").next())
        .unwrap()
        .to_string();
    let json: Value = serde_json::from_str(&run_ok(
        &data,
        &[
            "query",
            "--json",
            "-c",
            "aero-eval",
            "shock wave over a wedge",
        ],
    ))
    .unwrap();
    let method = json["fusion"]["method"].as_str().unwrap();
    assert!(stored.starts_with(method), "{stored} vs {json}");
    assert_eq!(json["results"][0]["title"], "Shock waves", "{json}");
    // A request's own values still win.
    let json: Value = serde_json::from_str(&run_ok(
        &data,
        &[
            "query",
            "--json",
            "-c",
            "aero-eval",
            "--fusion",
            "convex",
            "--alpha",
            "0.25",
            "shock wave",
        ],
    ))
    .unwrap();
    assert_eq!(json["fusion"]["method"], "convex");
    assert_eq!(json["fusion"]["alpha"], 0.25);

    // Bad flags are refused before anything runs.
    let bad = helpers::run(
        &data,
        &["eval", set.to_str().unwrap(), "--aggregate", "sum"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--aggregate"));
}

#[test]
fn answers_are_judged_and_off_domain_questions_refused() {
    let dir = helpers::TestDir::new();
    let data = dir.path().join("data");
    let (set, other) = (dir.path().join("aero"), dir.path().join("cooking"));
    aero(&set);
    cooking(&other);
    let outcomes = dir.path().join("outcomes.jsonl");
    let out = helpers::cmd(&data)
        .env("RAGCHAT_CHAT_BACKEND", "extractive")
        .args([
            "eval-answers",
            set.to_str().unwrap(),
            "--off-domain",
            other.to_str().unwrap(),
            "--outcomes-out",
            outcomes.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("answerable") && stdout.contains("off: cooking"),
        "{stdout}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&outcomes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8 + 3, "{lines:?}");
    let answerable: Vec<&Value> = lines.iter().filter(|o| o["set"] == "answerable").collect();
    let off: Vec<&Value> = lines.iter().filter(|o| o["set"] == "cooking").collect();
    // Baking questions asked of an aerodynamics collection are refused.
    assert!(off.iter().all(|o| o["refused"] == true), "{off:?}");
    // Most answerable ones are answered and cite the judged document.
    let cited = answerable
        .iter()
        .filter(|o| o["cited_relevant"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(cited >= 6, "{answerable:?}");
    for o in &answerable {
        assert!(o["error"].is_null(), "{o}");
        let g = &o["grounding"];
        assert!(g["best_similarity"].as_f64().is_some() && g["term_share"].as_f64().is_some());
    }
}
