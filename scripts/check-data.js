#!/usr/bin/env node
'use strict';
/** CLI: the data gate; streams sentiment CSV files through every data check and writes a JSON report. */

const path = require('path');
const { printable } = require('./csvstream');
const { runMain, writeJson, EXIT_OK } = require('./cli');
const { readArgs, USAGE } = require('./checks/options');
const { scanFile, accessProblem, displayName, newTotals } = require('./checks/scan');
const { overallProblems, scopeName, collapseByKind } = require('./checks/overall');
const { buildReference, readReference, compareWithReference, binNames } = require('./checks/drift');
const { MAX_LABEL_CHARS } = require('./checks/labels');

const EXIT_REJECTED = 1;

/** Streams every file, then runs the checks over the whole drop; returns {totals, dup, fileStats, problems, warnings, drift}. */
async function runChecks(settings, reference) {
  const totals = newTotals(settings.labels);
  const fileStats = [];
  const unreadable = [];
  for (const input of settings.inputs) {
    const problem = await accessProblem(input);
    if (problem === null) fileStats.push(await scanFile(input, settings, totals));
    else unreadable.push(problem);
  }
  const dup = totals.index.totals();
  const all = [...unreadable, ...fileStats.flatMap((s) => s.problems), ...overallProblems(totals, dup, fileStats, settings)];
  let drift = null;
  if (reference !== null && totals.rows > 0) {
    const scope = scopeName(fileStats.map((s) => s.file));
    const compared = compareWithReference(reference, path.basename(settings.reference), totals.labelCounts, totals.lengthCounts, settings, scope);
    drift = compared.drift;
    all.push(...compared.problems);
  }
  const problems = collapseByKind(all);
  return { totals, dup, fileStats, problems, warnings: collapseByKind(fileStats.flatMap((s) => s.warnings)), drift };
}

/** The JSON report: the original fields first, then duplicates, per-file figures, lengths, drift, warnings. */
function buildReport(settings, result) {
  const { totals, dup, fileStats, problems, warnings, drift } = result;
  const share = (n) => (totals.rows === 0 ? 0 : n / totals.rows);
  return {
    passed: problems.length === 0,
    rows: totals.rows,
    files: settings.inputs.map(displayName),
    label_counts: Object.fromEntries(totals.labelCounts),
    empty_after_cleaning: totals.empty,
    empty_share: share(totals.empty),
    latin1_rows: totals.latin1Rows,
    problems,
    warnings,
    duplicate_texts: dup.duplicate_texts,
    duplicate_rows: dup.duplicate_rows,
    duplicate_share: share(dup.duplicate_rows),
    conflicting_texts: dup.conflicting_texts,
    conflicting_rows: dup.conflicting_rows,
    conflict_share: share(dup.conflicting_rows),
    per_file: fileStats.map((s) => ({ file: s.file, rows: s.rows, latin1_rows: s.latin1.count, latin1_share: s.rows === 0 ? 0 : s.latin1.count / s.rows })),
    text_lengths: { bins: binNames(), counts: [...totals.lengthCounts] },
    drift,
    limits: {
      labels: settings.labels,
      max_empty_share: settings.maxEmptyShare,
      max_latin1_share: settings.maxLatin1Share,
      max_duplicate_share: settings.maxDuplicateShare,
      max_conflict_share: settings.maxConflictShare,
      min_rows_per_class: settings.minRowsPerClass,
      max_text_length: settings.maxTextLength,
      max_problem_lines: settings.maxProblemLines,
      max_label_psi: settings.maxLabelPsi,
      max_length_psi: settings.maxLengthPsi,
    },
  };
}

/** The human summary: one line per problem, then warnings, then the verdict. */
function summaryLines(report) {
  const lines = [...report.problems.map((p) => p.message), ...report.warnings.map((w) => `warning: ${w.message}`)];
  if (!report.passed) return [...lines, `data check rejected: ${report.problems.length} ${report.problems.length === 1 ? 'problem' : 'problems'}`];
  const counts = Object.entries(report.label_counts).map(([label, n]) => `${printable(label, MAX_LABEL_CHARS)}=${n}`).join(' ');
  return [...lines, `data check passed: ${report.rows} rows, label counts ${counts}`];
}

/**
 * Checks the drop `settings` names and writes the report (and the drift reference, when asked);
 * returns EXIT_OK when it passed, EXIT_REJECTED when not (an unreadable input file too).
 */
async function check(settings) {
  const reference = settings.reference === null ? null : await readReference(settings.reference);
  const result = await runChecks(settings, reference);
  const report = buildReport(settings, result);
  await writeJson(settings.report, report);
  if (settings.writeReference !== null) {
    await writeJson(settings.writeReference, buildReference(settings.labels, result.totals.labelCounts, result.totals.lengthCounts, report.passed));
  }
  process.stdout.write(`${summaryLines(report).join('\n')}\n`);
  return report.passed ? EXIT_OK : EXIT_REJECTED;
}

/**
 * Runs the gate: 0 passed, 1 rejected (an unreadable input file too); usage problems and a path that
 * does not exist throw errors whose exitCode is 2.
 */
async function main(argv) {
  const settings = readArgs(argv);
  if (settings.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  return check(settings);
}

if (require.main === module) runMain(main, USAGE);

module.exports = { main, check, runChecks, buildReport, summaryLines, EXIT_REJECTED };
