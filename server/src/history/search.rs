//! Finding records: the search text's limits ([`SearchText`]), the filter of a page ([`Filter`]), and
//! the plan that turns them into SQLite queries that read about one page of rows whatever the size
//! of the history.
//!
//! A page is the rows below a cursor in the order they were kept (`seq`), newest first. Every plan
//! walks an index in that order and stops once the page is full:
//!
//! - Terms of three characters or more are phrases of the trigram index, all in one `MATCH`; FTS5
//!   serves `ORDER BY rowid DESC LIMIT` by reading the terms' lists backwards, so a word found in a
//!   third of the prompts costs a page, not a third of the table.
//! - A two-character term (狐狸: most Chinese words) is not in a trigram index as such, but every
//!   prompt is indexed with a space after it, so each of its two-character substrings begins an
//!   indexed trigram. The index's vocabulary lists those trigrams (`狐狸的`, `狐狸 `...); the term
//!   becomes "any of them" in the same `MATCH`. A term found nowhere has none and ends the search at
//!   once.
//! - A term too common for that list (more trigrams than [`MAX_TRIGRAMS_PER_TERM`], or found in many
//!   of the newest prompts), and any one-character term, is looked for in the prompt itself, case
//!   folded as the index folds it ([`fold`]): walking the newest rows finds a page of a common term at
//!   once. (SQLite's `LIKE` folds ASCII letters only: `É` would not find `é`.)
//! - Starred only, with few stars ([`STAR_DRIVEN_MAX`]): the stars' index is walked instead, each
//!   row checked against the `MATCH`.
//! - A number also matches the seed: a second query on the seed's index, merged in order.
//!
//! BENCHMARKS.md (measurement 9) has the cost of each kind at 100,000 records.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _};

use super::{Entry, row_entry, seed_to_sql, to_sql};
use crate::job_id::JobId;

/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words in a search.
pub const MAX_QUERY_TERMS: usize = 16;
/// A two-character term begins at most this many distinct trigrams before it counts as common.
const MAX_TRIGRAMS_PER_TERM: usize = 64;
/// How many of the newest prompts a two-character term is first looked for in...
const RECENT_WINDOW: usize = 2048;
/// ...and in how many of them it must be found to count as common (reading prompts then fills a page
/// after about `RECENT_WINDOW / RECENT_COMMON` rows on average).
const RECENT_COMMON: usize = 64;
/// With at most this many stars in all, a starred search walks the stars: each is one lookup in the
/// full-text index (about 0.1 ms), so the worst case stays near 25 ms.
const STAR_DRIVEN_MAX: usize = 256;

/// The columns of a record (its `seq` twelfth, from 0) as every read selects them, from `history h`.
pub(super) const SELECTED: &str = "h.id, h.owner, h.prompt, h.seed, h.width, h.height, h.queued_at, \
                                   h.started_at, h.finished_at, h.elapsed_ms, h.backend, h.starred, h.seq, \
                                   h.source, h.loras";

/// A search text that passed its limits: the words (split at white space) and, when the whole text
/// is a number, the seed it may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchText {
    terms: Vec<String>,
    seed: Option<u64>,
}

/// A search text out of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchTextError {
    #[error("The search is longer than {MAX_QUERY_CHARS} characters.")]
    TooLong,
    #[error("The search has more than {MAX_QUERY_TERMS} words.")]
    TooManyTerms,
    /// A control character: FTS5 reads a quoted phrase as a C string, so a NUL would end it early
    /// (and SQLite then fails the query); no prompt holds one either.
    #[error("The search contains control characters.")]
    ControlCharacter,
}

impl SearchText {
    /// `None` for a blank text (no search).
    pub fn parse(text: &str) -> Result<Option<SearchText>, SearchTextError> {
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(SearchTextError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(SearchTextError::ControlCharacter);
        }
        let terms: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
        if terms.len() > MAX_QUERY_TERMS {
            return Err(SearchTextError::TooManyTerms);
        }
        if terms.is_empty() {
            return Ok(None);
        }
        let seed = match terms.as_slice() {
            [only] if only.bytes().all(|byte| byte.is_ascii_digit()) => only.parse().ok(),
            _ => None,
        };
        Ok(Some(SearchText { terms, seed }))
    }

    /// The words.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }
}

/// Which records a page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records whose prompt holds every word (or whose seed is the number).
    pub text: Option<SearchText>,
    /// Starred records only.
    pub starred_only: bool,
}

/// How one term is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lookup {
    /// A phrase of the trigram index (three characters or more).
    Phrase(String),
    /// Any of these trigrams of the index (a rare two-character term); none: found nowhere.
    AnyOf(Vec<String>),
    /// The term, case folded, looked for in each prompt (one character, or a common two).
    InPrompt(String),
}

/// The words of a search, ready for SQL: one `MATCH` (empty when no term uses the index) and the
/// folded terms looked for in the prompt, or `None` when some term is found nowhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Words {
    matching: Option<String>,
    in_prompt: Vec<String>,
}

/// One page: up to `limit` entries below `before` (newest first), and the id to pass as `before` for
/// the next page when there is one.
pub(super) fn page(
    connection: &Connection,
    filter: &Filter,
    limit: usize,
    before: Option<JobId>,
) -> rusqlite::Result<(Vec<Entry>, Option<JobId>)> {
    let below = cursor(connection, before)?;
    let wanted = limit.saturating_add(1);
    let mut rows = match &filter.text {
        None => rows_with(connection, &Words::default(), filter.starred_only, below, wanted)?,
        Some(text) => {
            let mut rows = match words(connection, &text.terms)? {
                Some(words) => rows_with(connection, &words, filter.starred_only, below, wanted)?,
                None => Vec::new(),
            };
            if let Some(seed) = text.seed {
                rows.extend(rows_with_seed(
                    connection,
                    seed,
                    filter.starred_only,
                    below,
                    wanted,
                )?);
                rows.sort_by_key(|row| std::cmp::Reverse(row.0));
                rows.dedup_by_key(|row| row.0);
            }
            rows
        }
    };
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(_, entry)| entry.record.id)
    } else {
        None
    };
    Ok((rows.into_iter().map(|(_, entry)| entry).collect(), next))
}

/// The `seq` a page starts below. `before` is the last id of the previous page; if that record went
/// away meanwhile, the page starts below the record made just after it (ids follow creation time),
/// and with none after it, at the newest.
fn cursor(connection: &Connection, before: Option<JobId>) -> rusqlite::Result<i64> {
    let Some(before) = before else {
        return Ok(i64::MAX);
    };
    let id = before.to_string();
    let exact = connection
        .prepare_cached("SELECT seq FROM history WHERE id = ?1")?
        .query_row([&id], |row| row.get(0))
        .optional()?;
    let seq = match exact {
        Some(seq) => Some(seq),
        None => connection
            .prepare_cached("SELECT seq FROM history WHERE id > ?1 ORDER BY id LIMIT 1")?
            .query_row([&id], |row| row.get(0))
            .optional()?,
    };
    Ok(seq.unwrap_or(i64::MAX))
}

/// Decides how each term is looked for.
fn words(connection: &Connection, terms: &[String]) -> rusqlite::Result<Option<Words>> {
    let mut groups = Vec::new();
    let mut in_prompt = Vec::new();
    for term in terms {
        match lookup(connection, term)? {
            Lookup::Phrase(phrase) => groups.push(phrase),
            Lookup::AnyOf(trigrams) if trigrams.is_empty() => return Ok(None),
            Lookup::AnyOf(trigrams) => groups.push(format!(
                "({})",
                trigrams
                    .iter()
                    .map(|trigram| fts_phrase(trigram))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            )),
            Lookup::InPrompt(folded) => in_prompt.push(folded),
        }
    }
    let matching = (!groups.is_empty()).then(|| groups.join(" AND "));
    Ok(Some(Words { matching, in_prompt }))
}

fn lookup(connection: &Connection, term: &str) -> rusqlite::Result<Lookup> {
    match term.chars().count() {
        0 | 1 => Ok(Lookup::InPrompt(fold(term))),
        2 => {
            let folded = fold(term);
            let recent: i64 = connection
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT prompt FROM history ORDER BY seq DESC LIMIT ?1) \
                     WHERE instr(zimage_fold(prompt), ?2) > 0",
                )?
                .query_row(rusqlite::params![RECENT_WINDOW as i64, folded], |row| row.get(0))?;
            if recent >= RECENT_COMMON as i64 {
                return Ok(Lookup::InPrompt(folded));
            }
            // The vocabulary is folded as the index folds it.
            let start = folded.clone();
            let trigrams = connection
                .prepare_cached(
                    "SELECT term FROM history_terms WHERE term >= ?1 AND term <= ?1 || char(1114111) \
                     LIMIT ?2",
                )?
                .query_map(
                    rusqlite::params![start, (MAX_TRIGRAMS_PER_TERM + 1) as i64],
                    |row| row.get::<_, String>(0),
                )?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            Ok(if trigrams.len() > MAX_TRIGRAMS_PER_TERM {
                Lookup::InPrompt(folded)
            } else {
                Lookup::AnyOf(trigrams)
            })
        }
        _ => Ok(Lookup::Phrase(fts_phrase(term))),
    }
}

/// The rows below `below` whose prompt has the words, newest first, at most `wanted`.
fn rows_with(
    connection: &Connection,
    words: &Words,
    starred_only: bool,
    below: i64,
    wanted: usize,
) -> rusqlite::Result<Vec<(i64, Entry)>> {
    let mut values = vec![Value::Integer(below)];
    let mut conditions = Vec::new();
    for folded in &words.in_prompt {
        values.push(Value::Text(folded.clone()));
        conditions.push(format!("AND instr(zimage_fold(h.prompt), ?{}) > 0", values.len()));
    }
    if starred_only {
        conditions.push("AND h.starred = 1".to_owned());
    }
    let conditions = conditions.join(" ");
    // Which index the rows are walked in, newest first: the full-text index's, the stars', or the
    // table's own.
    let (body, order) = match &words.matching {
        None => (format!("FROM history h WHERE h.seq < ?1 {conditions}"), "h.seq"),
        Some(matching) => {
            values.push(Value::Text(matching.clone()));
            let matching = values.len();
            if starred_only && stars(connection)? <= STAR_DRIVEN_MAX {
                (
                    format!(
                        "FROM history h WHERE h.seq < ?1 {conditions} AND EXISTS \
                         (SELECT 1 FROM history_fts WHERE history_fts MATCH ?{matching} AND rowid = h.seq)"
                    ),
                    "h.seq",
                )
            } else {
                (
                    format!(
                        "FROM history_fts JOIN history h ON h.seq = history_fts.rowid \
                         WHERE history_fts MATCH ?{matching} AND history_fts.rowid < ?1 {conditions}"
                    ),
                    "history_fts.rowid",
                )
            }
        }
    };
    values.push(Value::Integer(to_sql(wanted as u64)));
    let sql = format!(
        "SELECT {SELECTED} {body} ORDER BY {order} DESC LIMIT ?{}",
        values.len()
    );
    read(connection, &sql, &values)
}

/// The rows below `below` with this seed, newest first, at most `wanted`.
fn rows_with_seed(
    connection: &Connection,
    seed: u64,
    starred_only: bool,
    below: i64,
    wanted: usize,
) -> rusqlite::Result<Vec<(i64, Entry)>> {
    let starred = if starred_only { "AND h.starred = 1" } else { "" };
    let sql = format!(
        "SELECT {SELECTED} FROM history h WHERE h.seed = ?1 AND h.seq < ?2 {starred} \
         ORDER BY h.seq DESC LIMIT ?3"
    );
    let values = [
        Value::Integer(seed_to_sql(seed)),
        Value::Integer(below),
        Value::Integer(to_sql(wanted as u64)),
    ];
    read(connection, &sql, &values)
}

fn read(connection: &Connection, sql: &str, values: &[Value]) -> rusqlite::Result<Vec<(i64, Entry)>> {
    connection
        .prepare_cached(sql)?
        .query_map(rusqlite::params_from_iter(values.iter()), |row| {
            Ok((row.get::<_, i64>(12)?, row_entry(row)?))
        })?
        .collect()
}

/// How many records are starred (a count over the stars' partial index).
fn stars(connection: &Connection) -> rusqlite::Result<usize> {
    connection
        .prepare_cached("SELECT count(*) FROM history WHERE starred = 1")?
        .query_row([], |row| row.get::<_, i64>(0))
        .map(|count| usize::try_from(count).unwrap_or(usize::MAX))
}

/// A term as an FTS5 string (double quotes doubled): matched as a substring, never as query syntax.
fn fts_phrase(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// Case folded as the trigram index folds (Unicode lower case): `Été` and `ÉTÉ` are both `été`.
fn fold(text: &str) -> String {
    text.to_lowercase()
}

/// Adds `zimage_fold(text)`, [`fold`] in SQL, to a connection: the terms looked for in the prompt
/// itself are compared with the prompt folded by it.
pub(super) fn register_fold(connection: &Connection) -> rusqlite::Result<()> {
    connection.create_scalar_function(
        "zimage_fold",
        1,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |context| Ok(fold(&context.get::<String>(0)?)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{History, HistoryRecord, insert};
    use zimage_contract::Timings;

    fn record(prompt: &str, seed: u64) -> HistoryRecord {
        HistoryRecord {
            id: JobId::new(),
            owner: None,
            prompt: prompt.to_owned(),
            seed,
            width: 512,
            height: 512,
            timings: Timings {
                queued_at: 1,
                started_at: None,
                finished_at: None,
            },
            elapsed_ms: 1,
            backend: None,
            source: None,
            loras: Vec::new(),
        }
    }

    /// A history of `records`, written in one transaction (one commit each would take seconds).
    fn history_of(dir: &std::path::Path, records: &[HistoryRecord]) -> History {
        let history = History::open_blocking(dir).unwrap();
        {
            let mut writer = history.writer();
            let transaction = writer.transaction().unwrap();
            for record in records {
                insert(&transaction, record, false).unwrap();
            }
            transaction.commit().unwrap();
        }
        history
    }

    /// Every page of a search, followed to its end.
    fn all_pages(history: &History, filter: &Filter, limit: usize) -> Vec<JobId> {
        let mut found = Vec::new();
        let mut before = None;
        loop {
            let (page, next) = history.search_blocking(filter, limit, before).unwrap();
            assert!(page.len() <= limit);
            found.extend(page.iter().map(|entry| entry.record.id));
            match next {
                Some(next) => before = Some(next),
                None => return found,
            }
        }
    }

    /// What a search should find, by reading every record: each word in the prompt (case folded),
    /// or the number as the seed.
    fn expected(records: &[HistoryRecord], starred: &[JobId], text: &str, starred_only: bool) -> Vec<JobId> {
        let terms: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let seed: Option<u64> = match terms.as_slice() {
            [only] if only.bytes().all(|byte| byte.is_ascii_digit()) => only.parse().ok(),
            _ => None,
        };
        records
            .iter()
            .rev()
            .filter(|record| !starred_only || starred.contains(&record.id))
            .filter(|record| {
                let prompt = record.prompt.to_lowercase();
                terms.iter().all(|term| prompt.contains(term.as_str())) || seed == Some(record.seed)
            })
            .map(|record| record.id)
            .collect()
    }

    const WORDS: &[&str] = &[
        "红狐狸",
        "雪地",
        "狐狸",
        "城市",
        "夜晚的",
        "fox",
        "red",
        "snow",
        "ox",
        "a",
        "lighthouse",
        "猫",
        "at",
        "dusk",
    ];

    /// A gallery of prompts made of [`WORDS`], some run together (Chinese has no spaces), some
    /// ending in a two-character word (the end of a prompt is where a trigram index has none).
    fn gallery(count: usize) -> Vec<HistoryRecord> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..count)
            .map(|n| {
                let mut prompt = String::new();
                for _ in 0..1 + next() % 5 {
                    let word = WORDS[(next() % WORDS.len() as u64) as usize];
                    let glue = if next() % 3 == 0 || prompt.is_empty() {
                        ""
                    } else {
                        " "
                    };
                    prompt.push_str(glue);
                    prompt.push_str(word);
                }
                record(&prompt, n as u64 % 7)
            })
            .collect()
    }

    /// Each way of looking for a term (index phrase, vocabulary, the prompt itself; walking the full-text
    /// index or the stars) finds exactly what reading every record finds, through every page.
    #[test]
    fn every_plan_finds_what_reading_every_record_finds() {
        let dir = tempfile::tempdir().unwrap();
        let records = gallery(600);
        let history = history_of(dir.path(), &records);
        let queries = [
            "fox",
            "FOX",
            "狐狸",
            "雪地 狐狸",
            "红狐",
            "狐",
            "ox",
            "o",
            "夜晚",
            "城市 fox",
            "at dusk",
            "lighthouse 猫",
            "鲸鱼",
            "zq",
            "3",
            "5 fox",
            "unicorn",
            "x",
            "été",
            "éclair",
            "é",
            "É",
            "ét",
            "Éc",
        ];
        for (stars, label) in [(10, "few stars"), (400, "many stars")] {
            let starred: Vec<JobId> = records
                .iter()
                .step_by(600 / stars)
                .map(|record| record.id)
                .collect();
            {
                let writer = history.writer();
                writer.execute("UPDATE history SET starred = 0", []).unwrap();
                for id in &starred {
                    writer
                        .execute("UPDATE history SET starred = 1 WHERE id = ?1", [id.to_string()])
                        .unwrap();
                }
            }
            for query in queries {
                for starred_only in [false, true] {
                    let filter = Filter {
                        text: SearchText::parse(query).unwrap(),
                        starred_only,
                    };
                    assert_eq!(
                        all_pages(&history, &filter, 7),
                        expected(&records, &starred, query, starred_only),
                        "{query:?}, starred only: {starred_only}, {label}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_two_character_term_is_looked_up_by_how_common_it_is() {
        let dir = tempfile::tempdir().unwrap();
        // 狐狸 in 100 of the newest prompts: common. 城市 once, followed by 70 different characters
        // across one prompt: too many trigrams. 雪地 once: the vocabulary's trigrams.
        let mut records: Vec<_> = (0..100).map(|_| record("红狐狸", 1)).collect();
        let many: String = ('\u{4e00}'..'\u{4e46}').map(|c| format!("城市{c} ")).collect();
        records.push(record(&many, 1));
        records.push(record("一片雪地", 1));
        let history = history_of(dir.path(), &records);
        let reader = history.reader();
        assert_eq!(
            lookup(&reader, "狐狸").unwrap(),
            Lookup::InPrompt("狐狸".to_owned())
        );
        assert!(matches!(lookup(&reader, "城市").unwrap(), Lookup::InPrompt(_)));
        assert_eq!(
            lookup(&reader, "雪地").unwrap(),
            Lookup::AnyOf(vec!["雪地 ".to_owned()])
        );
        assert_eq!(lookup(&reader, "鲸鱼").unwrap(), Lookup::AnyOf(Vec::new()));
        assert_eq!(lookup(&reader, "狐").unwrap(), Lookup::InPrompt("狐".to_owned()));
        assert_eq!(
            lookup(&reader, "狐狸的").unwrap(),
            Lookup::Phrase("\"狐狸的\"".to_owned())
        );
    }

    #[test]
    fn a_page_after_its_last_record_went_away_goes_on_from_there() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (0..6).map(|n| record(&format!("fox {n}"), n)).collect();
        let history = history_of(dir.path(), &records);
        let filter = Filter::default();
        let (first, next) = history.search_blocking(&filter, 2, None).unwrap();
        assert_eq!(first[1].record.id, records[4].id);
        history
            .writer()
            .execute("DELETE FROM history WHERE id = ?1", [records[4].id.to_string()])
            .unwrap();
        let (second, _) = history.search_blocking(&filter, 2, next).unwrap();
        let second: Vec<JobId> = second.iter().map(|entry| entry.record.id).collect();
        assert_eq!(second, vec![records[3].id, records[2].id]);
        // An id newer than every record (or from another studio) reads as the newest page.
        let (from_elsewhere, _) = history.search_blocking(&filter, 2, Some(JobId::new())).unwrap();
        assert_eq!(from_elsewhere.len(), 2);
        assert_eq!(from_elsewhere[0].record.id, records[5].id);
    }

    #[test]
    fn search_text_has_limits() {
        assert_eq!(SearchText::parse("  ").unwrap(), None);
        assert_eq!(SearchText::parse(&"x".repeat(201)), Err(SearchTextError::TooLong));
        assert!(SearchText::parse(&"狐".repeat(200)).unwrap().is_some());
        assert_eq!(
            SearchText::parse(&"a ".repeat(17)),
            Err(SearchTextError::TooManyTerms)
        );
        assert_eq!(SearchText::parse("42").unwrap().unwrap().seed, Some(42));
        assert_eq!(SearchText::parse("42 fox").unwrap().unwrap().seed, None);
        assert_eq!(SearchText::parse("-42").unwrap().unwrap().seed, None);
        assert_eq!(
            SearchText::parse("99999999999999999999").unwrap().unwrap().seed,
            None
        );
        for control in ["fo\0x", "fox\nowl", "\u{1b}[31m", "owl\u{85}"] {
            assert_eq!(
                SearchText::parse(control),
                Err(SearchTextError::ControlCharacter),
                "{control:?}"
            );
        }
    }

    #[test]
    fn terms_are_text_never_query_syntax() {
        assert_eq!(fts_phrase("fox\""), "\"fox\"\"\"");
    }
}
