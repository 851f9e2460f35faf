'use strict';
/**
 * Checks over all files together. Shares (empty, duplicate, conflict) are judged over all rows; when
 * one is above its limit, each file that contributed gets a problem with its own count and first lines.
 */

const { plural } = require('./labels');

/** 'a.csv' for one input, 'all files' for several: the `file` of a problem about the whole drop. */
function scopeName(files) {
  return files.length === 1 ? files[0] : 'all files';
}

/** Formats a share as a percentage with one decimal. */
function pct(share) {
  return `${(share * 100).toFixed(1)}%`;
}

/** One problem per file with rows in `sampleKey`, when `share` exceeds `threshold`. */
function shareProblems(check, fileStats, sampleKey, share, threshold, what, extra) {
  if (share <= threshold) return [];
  return fileStats.filter((s) => s[sampleKey].count > 0).map((s) => ({
    check, file: s.file, count: s[sampleKey].count, lines: s[sampleKey].lines, share, threshold, ...extra,
    message: `${s.file}: ${s[sampleKey].describe()} ${what} (${pct(share)} of all rows, above the limit of ${pct(threshold)})`,
  }));
}

/** Class balance: a single class present, or classes with fewer rows than the minimum. */
function classProblems(totals, settings, scope) {
  const counts = settings.labels.map((l) => [l, totals.labelCounts.get(l) || 0]);
  const present = counts.filter(([, n]) => n > 0);
  if (present.length === 1 && settings.labels.length > 1) {
    return [{
      check: 'single_class', file: scope, label: present[0][0], count: present[0][1],
      message: `${scope}: only one class present ("${present[0][0]}", ${present[0][1]} ${plural(present[0][1], 'row')}); a classifier needs at least two`,
    }];
  }
  return counts.filter(([, n]) => n < settings.minRowsPerClass).map(([label, n]) => ({
    check: 'class_too_small', file: scope, label, count: n, threshold: settings.minRowsPerClass,
    message: `${scope}: class "${label}" has ${n} ${plural(n, 'row')}, fewer than the minimum of ${settings.minRowsPerClass}`,
  }));
}

/** All checks over the whole drop; `dup` is DuplicateIndex.totals(). */
function overallProblems(totals, dup, fileStats, settings) {
  const scope = scopeName(fileStats.map((s) => s.file));
  if (totals.rows === 0) return [{ check: 'no_rows', file: scope, message: `${scope}: no data rows in any input file` }];
  const emptyShare = totals.empty / totals.rows;
  return [
    ...shareProblems('empty_share', fileStats, 'empty', emptyShare, settings.maxEmptyShare, 'are empty after cleaning',
      { empty: totals.empty, rows: totals.rows }),
    // Judged over the whole drop, like the shares below: a file of three rows says little alone.
    ...shareProblems('encoding', fileStats, 'latin1', totals.latin1Rows / totals.rows, settings.maxLatin1Share,
      'are not valid UTF-8 and were decoded as latin-1', { latin1_rows: totals.latin1Rows }),
    ...shareProblems('duplicate', fileStats, 'duplicate', dup.duplicate_rows / totals.rows, settings.maxDuplicateShare,
      'repeat a text seen before', { duplicate_rows: dup.duplicate_rows, duplicate_texts: dup.duplicate_texts }),
    ...shareProblems('conflicting_labels', fileStats, 'conflict', dup.conflicting_rows / totals.rows, settings.maxConflictShare,
      'repeat a text seen before with a different label', { conflicting_rows: dup.conflicting_rows, conflicting_texts: dup.conflicting_texts }),
    ...classProblems(totals, settings, scope),
  ];
}

/** Files named one by one for each kind of problem; the rest are one total line. */
const MAX_FILES_PER_KIND = 5;
const MAX_NAMES_KEPT = 100; // of the files left out, named in the report

const number = (n) => n.toLocaleString('en-US');

/** Fills in the total line of one kind: how many rows (when the kind counts rows) in how many more files. */
function totalMessage(total, named) {
  const omitted = total.files.size;
  const more = `${number(omitted)} more ${plural(omitted, 'file')}`;
  const what = total.rows ? `and ${number(total.count)} more ${plural(total.count, 'row')} in ${more}` : `and ${more}`;
  total.file_names = [...total.files].slice(0, MAX_NAMES_KEPT);
  total.files = omitted;
  if (!total.rows) delete total.count;
  delete total.rows;
  total.message = `${total.check}: ${what} (${number(named + omitted)} files in all)`;
}

/**
 * Keeps the problems of the first `maxFiles` files of each kind (check) and replaces the rest of that
 * kind with one total, in the place of the first one left out: ten thousand tiny files give five
 * lines and "and N more rows in M more files", not a line per file. Order is otherwise kept.
 */
function collapseByKind(problems, maxFiles = MAX_FILES_PER_KIND) {
  const filesByKind = new Map();
  const totals = new Map();
  const out = [];
  for (const p of problems) {
    const files = filesByKind.get(p.check) || new Set();
    filesByKind.set(p.check, files);
    if (files.has(p.file) || files.size < maxFiles) {
      files.add(p.file);
      out.push(p);
      continue;
    }
    let total = totals.get(p.check);
    if (total === undefined) {
      total = { check: p.check, file: 'all files', omitted: true, count: 0, rows: true, files: new Set() };
      totals.set(p.check, total);
      out.push(total);
    }
    total.rows = total.rows && Number.isInteger(p.count);
    total.count += Number.isInteger(p.count) ? p.count : 0;
    total.files.add(p.file);
  }
  for (const total of totals.values()) totalMessage(total, filesByKind.get(total.check).size);
  return out;
}

module.exports = { overallProblems, classProblems, scopeName, collapseByKind, MAX_FILES_PER_KIND };
