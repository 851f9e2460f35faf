'use strict';
/** The data gate's command line: options, defaults and their validation into one frozen settings object. */

const { parseCli, UsageError } = require('../cli');

const USAGE = [
  'usage: node check-data.js --report REPORT.json [options] INPUT.csv [...]',
  'options (defaults): --labels negative,neutral,positive  --max-empty-share 0.05  --max-latin1-share 0.5',
  '  --max-duplicate-share 0.5  --max-conflict-share 0.05  --min-rows-per-class 1  --max-text-length 10000',
  '  --max-problem-lines 5  --reference REF.json  --max-label-psi 0.2  --max-length-psi 0.25  --write-reference OUT.json',
].join('\n');

/** Numeric options: name -> [default, kind]; kind 'share' is 0..1, 'psi' is >= 0, 'count' an integer >= min. */
const NUMBERS = {
  'max-empty-share': ['0.05', 'share'],
  'max-latin1-share': ['0.5', 'share'],
  'max-duplicate-share': ['0.5', 'share'],
  'max-conflict-share': ['0.05', 'share'],
  'min-rows-per-class': ['1', 'count', 0],
  'max-text-length': ['10000', 'count', 1],
  'max-problem-lines': ['5', 'count', 0],
  'max-label-psi': ['0.2', 'psi'],
  'max-length-psi': ['0.25', 'psi'],
};
/** Labels become bits of one integer in the duplicate index (checks/duplicates.js), hence a cap. */
const MAX_LABELS = 24;

const OPTIONS = {
  report: { type: 'string' },
  labels: { type: 'string', default: 'negative,neutral,positive' },
  reference: { type: 'string' },
  'write-reference': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  ...Object.fromEntries(Object.entries(NUMBERS).map(([name, [def]]) => [name, { type: 'string', default: def }])),
};

/** Parses one numeric option's text, or throws a UsageError naming the option and the accepted range. */
function readNumber(name, text) {
  const [, kind, min] = NUMBERS[name];
  const value = Number(text);
  const blank = text.trim() === '';
  if (kind === 'share' && (blank || !(value >= 0 && value <= 1))) {
    throw new UsageError(`--${name} must be a number from 0 to 1, got '${text}'`);
  }
  if (kind === 'psi' && (blank || !(value >= 0) || value === Infinity)) {
    throw new UsageError(`--${name} must be a number >= 0, got '${text}'`);
  }
  if (kind === 'count' && (blank || !Number.isSafeInteger(value) || value < min)) {
    throw new UsageError(`--${name} must be a whole number >= ${min}, got '${text}'`);
  }
  return value;
}

/** Turns 'max-empty-share' into 'maxEmptyShare'. */
function camel(name) {
  return name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/**
 * Validates the command line into frozen settings {report, labels, inputs, reference, writeReference,
 * maxEmptyShare, ...}; `extra` options (a CLI that does more than check, gate.js) are parsed too and
 * come back under their camel-cased names (null when not given).
 */
function readArgs(argv, extra = {}) {
  const { values, positionals } = parseCli(argv, { ...OPTIONS, ...extra });
  if (values.help) return { help: true };
  if (!values.report) throw new UsageError('the --report option is required');
  const labels = [...new Set(values.labels.split(',').map((l) => l.trim()).filter((l) => l.length > 0))];
  if (labels.length === 0) throw new UsageError('--labels needs at least one label');
  if (labels.length > MAX_LABELS) throw new UsageError(`--labels accepts at most ${MAX_LABELS} labels, got ${labels.length}`);
  const numbers = Object.fromEntries(Object.keys(NUMBERS).map((name) => [camel(name), readNumber(name, values[name])]));
  if (positionals.length === 0) throw new UsageError('no input CSV file given');
  return Object.freeze({
    report: values.report,
    labels,
    inputs: positionals,
    reference: values.reference || null,
    writeReference: values['write-reference'] || null,
    ...numbers,
    ...Object.fromEntries(Object.keys(extra).map((name) => [camel(name), values[name] ?? null])),
  });
}

module.exports = { readArgs, USAGE, OPTIONS, MAX_LABELS };
