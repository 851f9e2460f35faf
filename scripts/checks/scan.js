'use strict';
/** Streams one input file through the row-level checks, adding to the totals shared by all files. */

const fs = require('fs');
const path = require('path');
const { hasTokens } = require('../textclean');
const { readBatches, missingColumnMessage, printable, MissingColumnError, CsvParseError, InputFileError, REQUIRED_COLUMNS } = require('../csvstream');
const { sniffFile, delimiterHint, delimiterAdvice } = require('./sniff');
const { DuplicateIndex, textHash, NEW_TEXT, REPEAT } = require('./duplicates');
const { lengthBin, LENGTH_EDGES } = require('./drift');
const { LineSample, unknownLabels, shorten } = require('./labels');

const MAX_COLUMNS_REPORTED = 20;
const MAX_FILE_NAME_CHARS = 200;
const MAX_MESSAGE_CHARS = 2000;

/**
 * How a file is named in every problem, warning and message: its base name with control, format and
 * separator characters escaped (a newline in a name must not split a log line), length capped.
 */
function displayName(filePath) {
  return printable(path.basename(filePath), MAX_FILE_NAME_CHARS);
}

/**
 * A file the gate cannot read (permissions: the daemon's user could, the container's cannot) or that
 * is not a regular file is a problem of the drop, not a crash; a path that does not exist is a usage
 * error (InputFileError, exit 2). Returns the problem or null.
 */
async function accessProblem(filePath) {
  const file = displayName(filePath);
  let stat;
  try {
    stat = await fs.promises.stat(filePath);
    if (stat.isFile()) await fs.promises.access(filePath, fs.constants.R_OK);
  } catch (err) {
    if (err.code === 'ENOENT') throw new InputFileError(printable(filePath, MAX_MESSAGE_CHARS), 'no such file');
    const why = err.code === 'EACCES' || err.code === 'EPERM' ? 'permission denied' : printable(err.message, 200);
    return {
      check: 'unreadable', file, reason: err.code || null,
      message: `${file}: cannot be read (${why}): make it readable by every user (chmod a+r), or move it out of the data directory`,
    };
  }
  if (stat.isFile()) return null;
  return { check: 'unreadable', file, reason: 'not_a_file', message: `${file}: not a regular file; remove it from the data directory` };
}

/** Totals over all files: rows, empties, latin-1 rows, label counts, length histogram, duplicate index. */
function newTotals(labels) {
  return {
    rows: 0,
    empty: 0,
    latin1Rows: 0,
    labelCounts: new Map(labels.map((l) => [l, 0])),
    labelBits: new Map(labels.map((l, i) => [l, 2 ** i])),
    unknownBit: 2 ** labels.length,
    lengthCounts: new Array(LENGTH_EDGES.length).fill(0),
    index: new DuplicateIndex(labels.length + 1),
  };
}

/** Per-file findings: a LineSample for each row-level kind, unknown labels, problems and warnings. */
function newFileStats(file, settings) {
  const n = settings.maxProblemLines;
  return {
    file,
    rows: 0,
    latin1: new LineSample(n),
    nul: new LineSample(n),
    tooLong: new LineSample(n),
    empty: new LineSample(n),
    duplicate: new LineSample(n),
    conflict: new LineSample(n),
    unknown: unknownLabels(file, settings.labels, n),
    problems: [],
    warnings: [],
  };
}

/** Length in characters: UTF-16 code units, or code points when that matters for the limit. */
function overLimit(text, maxChars) {
  if (text.length <= maxChars) return false;
  let points = 0;
  for (const _ of text) if (++points > maxChars) return true; // eslint-disable-line no-unused-vars
  return false;
}

/** Applies every row-level check to one row. */
function checkRow(row, stats, totals, settings) {
  totals.rows += 1;
  stats.rows += 1;
  const { text, line } = row;
  if (row.encoding === 'latin-1') {
    totals.latin1Rows += 1;
    stats.latin1.add(line);
  }
  if (row.nul === true) stats.nul.add(line);
  totals.lengthCounts[lengthBin(text.length)] += 1;
  let bit = totals.labelBits.get(row.sentiment);
  if (bit === undefined) {
    bit = totals.unknownBit;
    const label = shorten(row.sentiment);
    if (stats.unknown.add(label, line)) totals.labelCounts.set(label, (totals.labelCounts.get(label) || 0) + 1);
  } else {
    totals.labelCounts.set(row.sentiment, totals.labelCounts.get(row.sentiment) + 1);
  }
  // A text over the limit is rejected anyway: not cleaned or hashed, so a 10 MB field costs one pass.
  if (overLimit(text, settings.maxTextLength)) {
    stats.tooLong.add(line);
    return;
  }
  if (!hasTokens(text)) {
    totals.empty += 1;
    stats.empty.add(line);
  }
  const trimmed = text.trim();
  if (trimmed.length === 0) return; // blank texts are counted as empty, not as duplicates of each other
  const seen = totals.index.add(textHash(trimmed), bit);
  if (seen === NEW_TEXT) return;
  stats.duplicate.add(line);
  if (seen !== REPEAT) stats.conflict.add(line);
}

/** A problem for one row-level LineSample, or none when it counted nothing. */
function sampleProblem(check, file, sample, what, extra = {}) {
  if (sample.count === 0) return [];
  return [{ check, file, count: sample.count, lines: sample.lines, ...extra, message: `${file}: ${sample.describe()} ${what}` }];
}

/** The problem for a parse error; an unclosed quote or a short unterminated record at the very end means truncation. */
function parseProblem(err, file, sniffed) {
  const atEnd = err.code === 'CSV_QUOTE_NOT_CLOSED' || (!sniffed.endsWithNewline && err.bytes === sniffed.size);
  if (!atEnd) return { check: 'parse_error', file, line: err.line, message: printable(err.message, MAX_MESSAGE_CHARS) }; // its file name escaped too
  const how = err.code === 'CSV_QUOTE_NOT_CLOSED' ? 'ends inside a quoted field' : 'is incomplete and has no line end';
  return {
    check: 'parse_error', file, line: err.line, truncated: true, reason: err.reason,
    message: `${file}: the file looks truncated: its last record, starting at line ${err.line}, ${how} (${err.reason})`,
  };
}

// Columns the corpus format carries that training does not use: expected, so not worth a warning.
const KNOWN_OPTIONAL_COLUMNS = Object.freeze(['confidence']);

/** Streams one file into totals; returns its per-file stats with problems and warnings filled in. */
async function scanFile(filePath, settings, totals) {
  const file = displayName(filePath);
  const stats = newFileStats(file, settings);
  const sniffed = await sniffFile(filePath, file);
  stats.warnings.push(...sniffed.warnings);
  if (sniffed.problems.length > 0) {
    stats.problems.push(...sniffed.problems);
    return stats;
  }
  const onHeader = (names) => {
    const extra = names.filter((n) => !REQUIRED_COLUMNS.includes(n) && !KNOWN_OPTIONAL_COLUMNS.includes(n));
    if (extra.length === 0) return;
    const shown = extra.slice(0, MAX_COLUMNS_REPORTED).map(shorten);
    stats.warnings.push({ check: 'unexpected_columns', file, columns: shown, message: `${file}: unexpected columns ignored: ${shown.join(', ')}` });
  };
  try {
    for await (const rows of readBatches(filePath, REQUIRED_COLUMNS, { onHeader })) {
      for (const row of rows) checkRow(row, stats, totals, settings);
    }
  } catch (err) {
    if (err instanceof MissingColumnError) {
      const found = err.found.slice(0, MAX_COLUMNS_REPORTED).map(shorten);
      const hint = delimiterHint(err.found);
      const advice = hint === null ? '' : delimiterAdvice(hint);
      const extra = hint === null ? {} : { delimiter: hint.delimiter };
      for (const column of err.missing) {
        stats.problems.push({ check: 'missing_column', file, column, columns_found: found, ...extra, message: `${missingColumnMessage(file, column, err.found)}${advice}` });
      }
    } else if (err instanceof CsvParseError) {
      stats.problems.push(parseProblem(err, file, sniffed));
    } else {
      throw err;
    }
  }
  stats.problems.push(
    ...sampleProblem('nul_bytes', file, stats.nul, 'contain NUL bytes (a binary or corrupted export?)'),
    ...sampleProblem('text_too_long', file, stats.tooLong, `have a text longer than ${settings.maxTextLength} characters`, { threshold: settings.maxTextLength }),
    ...stats.unknown.problems(),
  );
  return stats;
}

module.exports = { scanFile, accessProblem, displayName, newTotals, checkRow, overLimit };
