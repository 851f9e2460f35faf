#!/usr/bin/env node
'use strict';
/** CLI: the data gate; streams sentiment CSV files, checks columns, labels and empty texts, writes a JSON report. */

const path = require('path');
const { cleanAndTokenize } = require('./textclean');
const { readRecords, checkInputFiles, missingColumnMessage, printable, MissingColumnError, CsvParseError } = require('./csvstream');
const { parseCli, runMain, writeJson, UsageError, EXIT_OK } = require('./cli');

const USAGE = 'usage: node check-data.js --report REPORT.json [--labels negative,neutral,positive] [--max-empty-share 0.05] INPUT.csv [...]';
const OPTIONS = {
  report: { type: 'string' },
  labels: { type: 'string', default: 'negative,neutral,positive' },
  'max-empty-share': { type: 'string', default: '0.05' },
  help: { type: 'boolean', short: 'h' },
};
const EXIT_REJECTED = 1;
const FIRST_LINES_KEPT = 5;
/** Distinct unknown labels tracked per file, so garbage input cannot grow memory; the rest are pooled. */
const MAX_UNKNOWN_LABELS = 20;
const MAX_LABEL_CHARS = 64;
const MAX_COLUMNS_REPORTED = 20;

/** Validates the command line into {report, labels, maxEmptyShare, inputs, help}. */
function readArgs(argv) {
  const { values, positionals } = parseCli(argv, OPTIONS);
  if (values.help) return { help: true };
  if (!values.report) throw new UsageError('the --report option is required');
  const labels = values.labels.split(',').map((l) => l.trim()).filter((l) => l.length > 0);
  if (labels.length === 0) throw new UsageError('--labels needs at least one label');
  const maxEmptyShare = Number(values['max-empty-share']);
  if (values['max-empty-share'].trim() === '' || !(maxEmptyShare >= 0 && maxEmptyShare <= 1)) {
    throw new UsageError(`--max-empty-share must be a number from 0 to 1, got '${values['max-empty-share']}'`);
  }
  if (positionals.length === 0) throw new UsageError('no input CSV file given');
  return { report: values.report, labels, maxEmptyShare, inputs: positionals };
}

/** Returns word, with an s unless n is 1. */
function plural(n, word) {
  return n === 1 ? word : `${word}s`;
}

/** Shortens a label or column name read from a file, so that reports stay small. */
function shorten(label) {
  return label.length > MAX_LABEL_CHARS ? `${label.slice(0, MAX_LABEL_CHARS)}...` : label;
}

/** Counts one file's unknown labels with their first line numbers; turns them into problems. */
function unknownLabels(file) {
  const tracked = new Map();
  const pooled = { count: 0, lines: [] };
  return {
    /** Records a row; returns whether the label is tracked by name (else pooled). */
    add(label, line) {
      if (!tracked.has(label) && tracked.size >= MAX_UNKNOWN_LABELS) {
        pooled.count += 1;
        if (pooled.lines.length < FIRST_LINES_KEPT) pooled.lines.push(line);
        return false;
      }
      const entry = tracked.get(label) || { count: 0, lines: [] };
      entry.count += 1;
      if (entry.lines.length < FIRST_LINES_KEPT) entry.lines.push(line);
      tracked.set(label, entry);
      return true;
    },
    problems() {
      const named = [...tracked].map(([label, { count, lines }]) => ({
        check: 'unknown_label', file, label, count, lines,
        message: `${file}: unknown label ${printable(JSON.stringify(label), MAX_LABEL_CHARS + 8)} on ${count} ${plural(count, 'row')} (first at ${plural(lines.length, 'line')} ${lines.join(', ')})`,
      }));
      if (pooled.count === 0) return named;
      return [...named, {
        check: 'unknown_label', file, label: null, count: pooled.count, lines: pooled.lines,
        message: `${file}: ${pooled.count} more ${plural(pooled.count, 'row')} with other unknown labels (first at ${plural(pooled.lines.length, 'line')} ${pooled.lines.join(', ')})`,
      }];
    },
  };
}

/** Streams one file into totals; returns its problems (missing columns, parse error, unknown labels). */
async function checkFile(filePath, allowed, totals) {
  const file = path.basename(filePath);
  const unknown = unknownLabels(file);
  const problems = [];
  try {
    for await (const row of readRecords(filePath)) {
      totals.rows += 1;
      if (row.encoding === 'latin-1') totals.latin1Rows += 1;
      if (cleanAndTokenize(row.text).length === 0) totals.empty += 1;
      const label = allowed.has(row.sentiment) ? row.sentiment : shorten(row.sentiment);
      if (allowed.has(label) || unknown.add(label, row.line)) totals.labelCounts.set(label, (totals.labelCounts.get(label) || 0) + 1);
    }
  } catch (err) {
    if (err instanceof MissingColumnError) {
      const found = err.found.slice(0, MAX_COLUMNS_REPORTED).map(shorten);
      for (const column of err.missing) {
        problems.push({ check: 'missing_column', file, column, columns_found: found, message: missingColumnMessage(file, column, err.found) });
      }
    } else if (err instanceof CsvParseError) {
      problems.push({ check: 'parse_error', file, line: err.line, message: err.message });
    } else {
      throw err;
    }
  }
  return [...problems, ...unknown.problems()];
}

/** Checks over all files together: at least one row, and the share of rows left empty by cleaning. */
function overallProblems(totals, maxEmptyShare) {
  if (totals.rows === 0) return [{ check: 'no_rows', file: null, message: 'no data rows in any input file' }];
  const share = totals.empty / totals.rows;
  if (share <= maxEmptyShare) return [];
  return [{
    check: 'empty_share', file: null, empty: totals.empty, rows: totals.rows, share, threshold: maxEmptyShare,
    message: `${totals.empty} of ${totals.rows} rows (${(share * 100).toFixed(1)}%) are empty after cleaning, above the limit of ${(maxEmptyShare * 100).toFixed(1)}%`,
  }];
}

/** Runs the gate: 0 passed, 1 rejected; usage and IO problems throw errors whose exitCode is 2. */
async function main(argv) {
  const args = readArgs(argv);
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  await checkInputFiles(args.inputs);
  const totals = { rows: 0, empty: 0, latin1Rows: 0, labelCounts: new Map(args.labels.map((l) => [l, 0])) };
  const problems = [];
  for (const input of args.inputs) problems.push(...(await checkFile(input, new Set(args.labels), totals)));
  problems.push(...overallProblems(totals, args.maxEmptyShare));
  const report = {
    passed: problems.length === 0,
    rows: totals.rows,
    files: args.inputs.map((p) => path.basename(p)),
    label_counts: Object.fromEntries(totals.labelCounts),
    empty_after_cleaning: totals.empty,
    empty_share: totals.rows === 0 ? 0 : totals.empty / totals.rows,
    latin1_rows: totals.latin1Rows,
    problems,
  };
  await writeJson(args.report, report);
  const counts = Object.entries(report.label_counts).map(([label, n]) => `${printable(label, MAX_LABEL_CHARS)}=${n}`).join(' ');
  const lines = report.passed ? [`data check passed: ${report.rows} rows, label counts ${counts}`] : problems.map((p) => p.message);
  process.stdout.write(`${lines.join('\n')}\n`);
  return report.passed ? EXIT_OK : EXIT_REJECTED;
}

if (require.main === module) runMain(main, USAGE);

module.exports = { main, checkFile, overallProblems };
