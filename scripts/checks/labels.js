'use strict';
/** Line samples for row-level findings, and unknown labels with their near-miss hints. */

const { printable } = require('../csvstream');

/** Distinct unknown labels tracked per file, so garbage input cannot grow memory; the rest are pooled. */
const MAX_UNKNOWN_LABELS = 20;
const MAX_LABEL_CHARS = 64;
/** A prefix shorter than this is too vague to suggest a label ('n' could be negative or neutral). */
const MIN_PREFIX_CHARS = 2;

/** Returns word, with an s unless n is 1. */
function plural(n, word) {
  return n === 1 ? word : `${word}s`;
}

/** Shortens a label or column name read from a file, so that reports stay small. */
function shorten(label) {
  return label.length > MAX_LABEL_CHARS ? `${label.slice(0, MAX_LABEL_CHARS)}...` : label;
}

/** Counts rows of one kind in one file and keeps the first `limit` line numbers. */
class LineSample {
  constructor(limit) {
    this.limit = limit;
    this.count = 0;
    this.lines = [];
  }

  add(line) {
    this.count += 1;
    if (this.lines.length < this.limit) this.lines.push(line);
  }

  /** '3 rows (first at lines 2, 5, 9)' */
  describe() {
    const more = this.count > this.lines.length ? ', ...' : '';
    return `${this.count} ${plural(this.count, 'row')} (${plural(this.lines.length, 'line')} ${this.lines.join(', ')}${more})`;
  }
}

/**
 * The allowed label a near-miss most likely meant: equal after trimming and lowercasing, or a unique
 * prefix abbreviation of one ('POS', 'neg', 'Positive '); null when none or several fit.
 */
function suggestLabel(label, allowed) {
  const wanted = label.trim().toLowerCase();
  if (wanted.length === 0) return null;
  const exact = allowed.filter((a) => a.toLowerCase() === wanted);
  if (exact.length === 1) return exact[0];
  if (wanted.length < MIN_PREFIX_CHARS) return null;
  const prefixed = allowed.filter((a) => a.toLowerCase().startsWith(wanted));
  return prefixed.length === 1 ? prefixed[0] : null;
}

/** Counts one file's unknown labels with their first line numbers; turns them into problems. */
function unknownLabels(file, allowed, limit) {
  const tracked = new Map();
  const pooled = new LineSample(limit);
  return {
    /** Records a row; returns whether the label is tracked by name (else pooled). */
    add(label, line) {
      let entry = tracked.get(label);
      if (entry === undefined) {
        if (tracked.size >= MAX_UNKNOWN_LABELS) {
          pooled.add(line);
          return false;
        }
        entry = new LineSample(limit);
        tracked.set(label, entry);
      }
      entry.add(line);
      return true;
    },
    problems() {
      const named = [...tracked].map(([label, sample]) => {
        const hint = suggestLabel(label, allowed);
        const name = printable(JSON.stringify(label), MAX_LABEL_CHARS + 8);
        return {
          check: 'unknown_label', file, label, count: sample.count, lines: sample.lines, suggestion: hint,
          message: `${file}: unknown label ${name} on ${sample.describe()}${hint === null ? '' : `; did you mean "${hint}"?`}`,
        };
      });
      if (pooled.count === 0) return named;
      return [...named, {
        check: 'unknown_label', file, label: null, count: pooled.count, lines: pooled.lines, suggestion: null,
        message: `${file}: ${pooled.describe()} with other unknown labels`,
      }];
    },
  };
}

module.exports = { LineSample, unknownLabels, suggestLabel, shorten, plural, MAX_LABEL_CHARS };
