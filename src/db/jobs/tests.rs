use super::*;
use crate::db::collections;
use crate::db::testing::backends;
use serde_json::json;
use std::collections::HashSet;

const MINUTE: Duration = Duration::from_secs(60);

fn no_jitter(base: u64, max: u64) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_secs(base),
        max: Duration::from_secs(max),
        jitter: false,
    }
}

fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({ "n": 1 }))
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn must_get(db: &Db, id: &str) -> Job {
    get(db, id).await.unwrap().expect("job exists")
}

/// Time travel for tests: make a job runnable (or not) without sleeping.
async fn set_run_after(db: &Db, id: &str, t: NaiveDateTime) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::update(jobs::table.find(id))
            .set(jobs::run_after.eq(t))
            .execute(conn)
            .await?;
        Ok(())
    })
}

async fn expire_lease(db: &Db, id: &str) -> DbResult<()> {
    db_run!(db, conn => {
        diesel::update(jobs::table.find(id))
            .set(jobs::lease_expires_at.eq(Some(now() - secs(1))))
            .execute(conn)
            .await?;
        Ok(())
    })
}

#[tokio::test]
async fn enqueue_get_list_paging_filters_and_counts() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let docs = collections::ensure_collection(db, "docs").await.unwrap();
        let mut made = Vec::new();
        for i in 0..5 {
            let mut new = job(if i % 2 == 0 { "crawl" } else { "ingest_upload" });
            if i < 3 {
                new.collection_id = Some(docs.id.clone());
            }
            new.payload = json!({ "i": i });
            made.push(enqueue(db, new).await.unwrap());
        }
        let first = &made[0];
        assert_eq!(first.state, JobState::Queued);
        assert_eq!(first.attempts, 0);
        assert_eq!(first.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(first.payload, r#"{"i":0}"#);
        assert_eq!(first.progress, "{}");
        assert_eq!(first.run_after, first.created_at);
        // Every column round-trips, timestamps included.
        for j in &made {
            assert_eq!(&must_get(db, &j.id).await, j);
        }
        assert!(get(db, "missing").await.unwrap().is_none());

        let mut expected = made.clone();
        expected.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        let expected: Vec<_> = expected.into_iter().map(|j| j.id).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = list(db, &JobFilter::default(), cursor.clone(), 2)
                .await
                .unwrap();
            seen.extend(page.iter().map(|j| j.id.clone()));
            match page.last() {
                Some(last) if page.len() == 2 => {
                    cursor = Some((last.created_at, last.id.to_string()))
                }
                _ => break,
            }
        }
        assert_eq!(seen, expected);

        let crawls = JobFilter {
            kind: Some("crawl".into()),
            ..JobFilter::default()
        };
        let ids: HashSet<_> = list(db, &crawls, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        let want: HashSet<_> = [0, 2, 4].iter().map(|&i| made[i].id.clone()).collect();
        assert_eq!(ids, want);

        let in_docs = JobFilter {
            collection_id: Some(docs.id.clone()),
            ..JobFilter::default()
        };
        assert_eq!(list(db, &in_docs, None, 10).await.unwrap().len(), 3);
        let crawls_in_docs = JobFilter {
            kind: Some("crawl".into()),
            ..in_docs.clone()
        };
        assert_eq!(list(db, &crawls_in_docs, None, 10).await.unwrap().len(), 2);

        let taken = claim(db, "w1", MINUTE, None).await.unwrap().unwrap();
        let running = JobFilter {
            state: Some(JobState::Running),
            ..JobFilter::default()
        };
        let listed = list(db, &running, None, 10).await.unwrap();
        assert_eq!(listed, vec![taken]);

        let counts = count_by_state(db).await.unwrap();
        assert_eq!(
            counts,
            vec![
                (JobState::Queued, 4),
                (JobState::Running, 1),
                (JobState::Succeeded, 0),
                (JobState::Failed, 0),
                (JobState::Cancelled, 0),
                (JobState::Dead, 0),
            ]
        );
    }
}

#[tokio::test]
async fn claim_takes_the_longest_waiting_runnable_job_of_the_given_kinds() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let start = now();
        let at = |offset: i64| {
            let mut new = job("crawl");
            new.run_after = Some(start + secs(offset));
            new
        };
        // Enqueued out of order: claim order follows run_after.
        let b = enqueue(db, at(-1)).await.unwrap();
        let a = enqueue(db, at(-2)).await.unwrap();
        let future = enqueue(db, at(3600)).await.unwrap();
        let mut other = job("optimize_index");
        other.run_after = Some(start - secs(3));
        let other = enqueue(db, other).await.unwrap();

        let crawl = Some(&["crawl"][..]);
        let before = now();
        let got = claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap();
        assert_eq!(got.id, a.id);
        assert_eq!(got.state, JobState::Running);
        assert_eq!(got.lease_owner.as_deref(), Some("w1"));
        assert_eq!(got.attempts, 1);
        let started = got.started_at.unwrap();
        assert!(started >= before && started <= now());
        assert_eq!(got.lease_expires_at, Some(started + secs(60)));
        assert_eq!(got, must_get(db, &a.id).await);

        assert_eq!(
            claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap().id,
            b.id
        );
        // Only the future crawl is left: not runnable yet.
        assert!(claim(db, "w1", MINUTE, crawl).await.unwrap().is_none());
        let both = Some(&["crawl", "ingest_upload"][..]);
        assert!(claim(db, "w1", MINUTE, both).await.unwrap().is_none());
        assert!(claim(db, "w1", MINUTE, Some(&[][..]))
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            claim(db, "w1", MINUTE, None).await.unwrap().unwrap().id,
            other.id
        );
        assert!(claim(db, "w1", MINUTE, None).await.unwrap().is_none());
        assert_eq!(must_get(db, &future.id).await.state, JobState::Queued);

        set_run_after(db, &future.id, now() - secs(1))
            .await
            .unwrap();
        assert_eq!(
            claim(db, "w1", MINUTE, crawl).await.unwrap().unwrap().id,
            future.id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_disjoint_sets_covering_every_job() {
    const JOBS: usize = 40;
    const CLAIMERS: usize = 4;
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let mut all = HashSet::new();
        for _ in 0..JOBS {
            all.insert(enqueue(db, job("crawl")).await.unwrap().id);
        }
        let mut tasks = Vec::new();
        for w in 0..CLAIMERS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut got = Vec::new();
                while let Some(j) = claim(&db, &worker, MINUTE, None).await.unwrap() {
                    assert_eq!(j.lease_owner.as_deref(), Some(worker.as_str()));
                    got.push(j.id);
                    tokio::task::yield_now().await;
                }
                (worker, got)
            }));
        }
        let mut taken = 0;
        let mut union = HashSet::new();
        for task in tasks {
            let (worker, got) = task.await.unwrap();
            eprintln!("{worker} claimed {}", got.len());
            taken += got.len();
            for id in got {
                // Each claim stuck: the row still names its claimer, after one attempt.
                let j = must_get(db, &id).await;
                assert_eq!(j.lease_owner.as_deref(), Some(worker.as_str()));
                assert_eq!(j.attempts, 1);
                union.insert(id);
            }
        }
        assert_eq!(taken, JOBS, "a job was handed to two claimers");
        assert_eq!(union, all);
    }
}

#[tokio::test]
async fn an_expired_lease_is_reclaimed_and_fences_the_old_worker() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let j = enqueue(db, job("crawl")).await.unwrap();
        let a = claim(db, "a", Duration::from_secs(1), None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.id, j.id);
        assert!(claim(db, "b", MINUTE, None).await.unwrap().is_none());
        assert!(
            report_progress(db, &j.id, "a", &json!({"documents_done": 1}))
                .await
                .unwrap()
        );
        assert!(!renew(db, &j.id, "b", MINUTE).await.unwrap());

        tokio::time::sleep(Duration::from_millis(1100)).await;
        let b = claim(db, "b", MINUTE, None).await.unwrap().unwrap();
        assert_eq!(b.id, j.id);
        assert_eq!(b.attempts, 2);
        assert_eq!(b.lease_owner.as_deref(), Some("b"));

        // The old worker can no longer write anything.
        assert!(!renew(db, &j.id, "a", MINUTE).await.unwrap());
        assert!(!report_progress(db, &j.id, "a", &json!({"x": 1}))
            .await
            .unwrap());
        assert!(!complete(db, &j.id, "a", &json!({"by": "a"})).await.unwrap());
        assert!(!finish_cancelled(db, &j.id, "a").await.unwrap());
        let policy = RetryPolicy::default();
        assert_eq!(
            fail(db, &j.id, "a", "x", false, &policy).await.unwrap(),
            None
        );
        assert_eq!(
            fail(db, &j.id, "a", "x", true, &policy).await.unwrap(),
            None
        );
        assert_eq!(must_get(db, &j.id).await, b);

        let before = must_get(db, &j.id).await.lease_expires_at.unwrap();
        assert!(renew(db, &j.id, "b", Duration::from_secs(600))
            .await
            .unwrap());
        let renewed = must_get(db, &j.id).await.lease_expires_at.unwrap();
        assert!(renewed > before + secs(500));
        let progress = json!({"documents_done": 2, "documents_total": 3});
        assert!(report_progress(db, &j.id, "b", &progress).await.unwrap());
        assert_eq!(must_get(db, &j.id).await.progress, progress.to_string());
        assert!(complete(db, &j.id, "b", &json!({"chunks": 7}))
            .await
            .unwrap());
        let done = must_get(db, &j.id).await;
        assert_eq!(done.state, JobState::Succeeded);
        assert_eq!(done.result.as_deref(), Some(r#"{"chunks":7}"#));
        assert!(done.finished_at.is_some());
        assert_eq!(done.lease_owner, None);
        assert_eq!(done.lease_expires_at, None);
        // Finished: not even the last owner can write any more.
        assert!(!complete(db, &j.id, "b", &json!({})).await.unwrap());
        assert!(!renew(db, &j.id, "b", MINUTE).await.unwrap());
        assert!(claim(db, "c", MINUTE, None).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn expired_jobs_out_of_attempts_die_and_pending_cancels_finish() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let mut once = job("crawl");
        once.max_attempts = 1;
        let once = enqueue(db, once).await.unwrap();
        claim(db, "a", MINUTE, None).await.unwrap().unwrap();
        let cancelled = enqueue(db, job("crawl")).await.unwrap();
        claim(db, "a", MINUTE, None).await.unwrap().unwrap();
        request_cancel(db, &cancelled.id).await.unwrap().unwrap();

        expire_lease(db, &once.id).await.unwrap();
        expire_lease(db, &cancelled.id).await.unwrap();
        assert!(claim(db, "b", MINUTE, None).await.unwrap().is_none());
        let dead = must_get(db, &once.id).await;
        assert_eq!(dead.state, JobState::Dead);
        assert_eq!(dead.attempts, 1);
        assert_eq!(dead.last_error.as_deref(), Some(LEASE_EXPIRED_ERROR));
        assert!(dead.finished_at.is_some());
        assert_eq!(dead.lease_owner, None);
        let c = must_get(db, &cancelled.id).await;
        assert_eq!(c.state, JobState::Cancelled);
        assert!(c.finished_at.is_some());
        assert!(!complete(db, &once.id, "a", &json!({})).await.unwrap());
    }
}

#[tokio::test]
async fn failures_retry_with_capped_exponential_backoff_then_die() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let policy = no_jitter(60, 90);
        let j = enqueue(db, job("crawl")).await.unwrap();
        assert_eq!(j.max_attempts, 3);

        // Attempt 1 fails: retry after base (60 s).
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        let before = now();
        let next = fail(db, &j.id, "w", "boom 1", false, &policy)
            .await
            .unwrap();
        assert_eq!(next, Some(JobState::Queued));
        let after = now();
        let q = must_get(db, &j.id).await;
        assert_eq!(q.state, JobState::Queued);
        assert_eq!(q.attempts, 1);
        assert_eq!(q.last_error.as_deref(), Some("boom 1"));
        assert_eq!((q.lease_owner.as_deref(), q.lease_expires_at), (None, None));
        assert_eq!(q.finished_at, None);
        assert!(q.run_after >= before + secs(60) && q.run_after <= after + secs(60));
        assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());

        // Attempt 2 fails: 120 s doubled, capped at 90 s.
        set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
        let again = claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        assert_eq!(again.attempts, 2);
        let before = now();
        let next = fail(db, &j.id, "w", "boom 2", false, &policy)
            .await
            .unwrap();
        assert_eq!(next, Some(JobState::Queued));
        let q = must_get(db, &j.id).await;
        assert!(q.run_after >= before + secs(90) && q.run_after <= now() + secs(90));
        assert_eq!(q.last_error.as_deref(), Some("boom 2"));

        // Attempt 3 is the last one: dead, with its error.
        set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
        assert_eq!(
            claim(db, "w", MINUTE, None)
                .await
                .unwrap()
                .unwrap()
                .attempts,
            3
        );
        let next = fail(db, &j.id, "w", "boom 3", false, &policy)
            .await
            .unwrap();
        assert_eq!(next, Some(JobState::Dead));
        let d = must_get(db, &j.id).await;
        assert_eq!(d.state, JobState::Dead);
        assert_eq!(d.last_error.as_deref(), Some("boom 3"));
        assert!(d.finished_at.is_some());
        set_run_after(db, &j.id, now() - secs(1)).await.unwrap();
        assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());
    }
}

#[tokio::test]
async fn permanent_failures_and_failures_under_cancel_do_not_retry() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let policy = no_jitter(1, 1);
        let j = enqueue(db, job("ingest_upload")).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        let next = fail(db, &j.id, "w", "unsupported file", true, &policy)
            .await
            .unwrap();
        assert_eq!(next, Some(JobState::Failed));
        let f = must_get(db, &j.id).await;
        assert_eq!(f.state, JobState::Failed);
        assert_eq!(f.attempts, 1);
        assert_eq!(f.last_error.as_deref(), Some("unsupported file"));
        assert!(f.finished_at.is_some());

        let j = enqueue(db, job("crawl")).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        request_cancel(db, &j.id).await.unwrap().unwrap();
        let next = fail(db, &j.id, "w", "interrupted", false, &policy)
            .await
            .unwrap();
        assert_eq!(next, Some(JobState::Cancelled));
        assert_eq!(must_get(db, &j.id).await.state, JobState::Cancelled);

        // Long errors are cut at a character boundary.
        let j = enqueue(db, job("crawl")).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        let long = "é".repeat(MAX_ERROR_BYTES);
        fail(db, &j.id, "w", &long, true, &policy).await.unwrap();
        let kept = must_get(db, &j.id).await.last_error.unwrap();
        assert!(kept.len() <= MAX_ERROR_BYTES + '…'.len_utf8());
        assert!(kept.starts_with("éé") && kept.ends_with('…'));
    }
}

#[tokio::test]
async fn cancelling_queued_running_finished_and_missing_jobs() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let queued = enqueue(db, job("crawl")).await.unwrap();
        assert!(!is_cancel_requested(db, &queued.id).await.unwrap());
        let c = request_cancel(db, &queued.id).await.unwrap().unwrap();
        assert_eq!(c.state, JobState::Cancelled);
        assert!(c.finished_at.is_some());
        assert!(claim(db, "w", MINUTE, None).await.unwrap().is_none());

        let running = enqueue(db, job("crawl")).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        let r = request_cancel(db, &running.id).await.unwrap().unwrap();
        assert_eq!(r.state, JobState::Running);
        assert!(r.cancel_requested);
        assert!(is_cancel_requested(db, &running.id).await.unwrap());
        // Cancelling is not losing the lease: the worker keeps writing.
        assert!(renew(db, &running.id, "w", MINUTE).await.unwrap());
        assert!(!finish_cancelled(db, &running.id, "other").await.unwrap());
        assert!(finish_cancelled(db, &running.id, "w").await.unwrap());
        let done = must_get(db, &running.id).await;
        assert_eq!(done.state, JobState::Cancelled);
        assert!(done.finished_at.is_some());
        assert_eq!(done.lease_owner, None);

        // Finished jobs stay exactly as they are.
        let finished = enqueue(db, job("crawl")).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        complete(db, &finished.id, "w", &json!({})).await.unwrap();
        let before = must_get(db, &finished.id).await;
        let after = request_cancel(db, &finished.id).await.unwrap().unwrap();
        assert_eq!(after, before);
        assert_eq!(after.state, JobState::Succeeded);
        assert_eq!(must_get(db, &finished.id).await, before);

        assert!(request_cancel(db, "missing").await.unwrap().is_none());
        assert!(!is_cancel_requested(db, "missing").await.unwrap());
    }
}

#[tokio::test]
async fn a_dedupe_key_allows_one_live_job() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let keyed = || {
            let mut new = job("optimize_index");
            new.dedupe_key = Some("optimize:docs".into());
            new
        };
        let first = enqueue(db, keyed()).await.unwrap();
        assert_eq!(enqueue(db, keyed()).await.unwrap(), first);
        let running = claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        assert_eq!(enqueue(db, keyed()).await.unwrap(), running);
        assert_eq!(
            list(db, &JobFilter::default(), None, 10)
                .await
                .unwrap()
                .len(),
            1
        );

        // Finished jobs free the key.
        complete(db, &first.id, "w", &json!({})).await.unwrap();
        let second = enqueue(db, keyed()).await.unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(second.state, JobState::Queued);

        // Concurrent enqueuers agree on one job.
        request_cancel(db, &second.id).await.unwrap();
        let racers = (0..4).map(|_| enqueue(db, keyed()));
        let ids: HashSet<_> = futures::future::join_all(racers)
            .await
            .into_iter()
            .map(|r| r.unwrap().id)
            .collect();
        assert_eq!(ids.len(), 1);

        // Jobs without a key never collide.
        let a = enqueue(db, job("crawl")).await.unwrap();
        let b = enqueue(db, job("crawl")).await.unwrap();
        assert_ne!(a.id, b.id);
    }
}

#[tokio::test]
async fn deleting_a_collection_removes_its_jobs() {
    for t in backends().await {
        let db = &t.db;
        eprintln!("backend: {}", db.backend());
        let docs = collections::ensure_collection(db, "docs").await.unwrap();
        let mut new = job("crawl");
        new.collection_id = Some(docs.id.clone());
        let running = enqueue(db, new.clone()).await.unwrap();
        claim(db, "w", MINUTE, None).await.unwrap().unwrap();
        let queued = enqueue(db, new).await.unwrap();
        let unrelated = enqueue(db, job("optimize_index")).await.unwrap();

        collections::delete_collection(db, &docs.id).await.unwrap();
        assert!(get(db, &running.id).await.unwrap().is_none());
        assert!(get(db, &queued.id).await.unwrap().is_none());
        assert!(!renew(db, &running.id, "w", MINUTE).await.unwrap());
        assert!(get(db, &unrelated.id).await.unwrap().is_some());
        assert_eq!(
            claim(db, "w", MINUTE, None).await.unwrap().unwrap().id,
            unrelated.id
        );
    }
}

#[test]
fn backoff_doubles_caps_and_jitters_within_half() {
    let p = no_jitter(1, 10);
    let waits: Vec<u64> = (1..=6).map(|a| p.backoff(a).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    assert_eq!(p.backoff(0), Duration::from_secs(1));
    assert_eq!(p.backoff(i32::MAX), Duration::from_secs(10));
    let huge = RetryPolicy {
        max: Duration::MAX,
        ..p
    };
    assert_eq!(huge.backoff(i32::MAX), Duration::from_secs(1 << 31));

    let jittered = RetryPolicy { jitter: true, ..p };
    let waits: Vec<Duration> = (0..200).map(|_| jittered.backoff(4)).collect();
    assert!(waits
        .iter()
        .all(|w| *w >= Duration::from_secs(4) && *w <= Duration::from_secs(8)));
    assert!(waits.iter().collect::<HashSet<_>>().len() > 1);
}

#[test]
fn state_names_round_trip() {
    for state in JobState::ALL {
        assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
    }
    assert!("paused".parse::<JobState>().is_err());
    let live: Vec<_> = JobState::ALL
        .into_iter()
        .filter(|s| !s.is_finished())
        .collect();
    assert_eq!(live, LIVE);
}
