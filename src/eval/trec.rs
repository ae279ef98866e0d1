//! Run files in the TREC format read by trec_eval and pytrec_eval.

use std::io::{self, Write};

/// Writes one `qid Q0 docid rank score tag` line per result, ranks from 1 in
/// the order given.
///
/// Ids and the tag may not be empty or contain whitespace, since either would
/// shift the columns and make trec_eval misread the whole line.
pub fn write_run(
    w: &mut impl Write,
    run: &[(String, Vec<(String, f32)>)],
    tag: &str,
) -> io::Result<()> {
    check_field("tag", tag)?;
    for (qid, results) in run {
        check_field("query id", qid)?;
        for (i, (doc_id, score)) in results.iter().enumerate() {
            check_field("doc id", doc_id)?;
            // trec_eval re-sorts by score, so scores are written with `{}`,
            // the shortest form that round-trips, rather than rounded into ties.
            writeln!(w, "{qid} Q0 {doc_id} {} {score} {tag}", i + 1)?;
        }
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> io::Result<()> {
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} {value:?} cannot be written to a TREC run file"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ranked_lines() {
        let run = vec![
            (
                "q1".to_string(),
                vec![("d3".to_string(), 2.5), ("d1".to_string(), 0.125)],
            ),
            ("q2".to_string(), vec![]),
            ("q3".to_string(), vec![("d9".to_string(), -1.0)]),
        ];
        let mut out = Vec::new();
        write_run(&mut out, &run, "bm25").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "q1 Q0 d3 1 2.5 bm25\nq1 Q0 d1 2 0.125 bm25\nq3 Q0 d9 1 -1 bm25\n"
        );
    }

    #[test]
    fn rejects_whitespace_in_fields() {
        let run = vec![("q1".to_string(), vec![("doc 1".to_string(), 1.0)])];
        let err = write_run(&mut Vec::new(), &run, "tag").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(write_run(&mut Vec::new(), &[], "my run").is_err());
        assert!(write_run(&mut Vec::new(), &[], "").is_err());
    }
}
