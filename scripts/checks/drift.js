'use strict';
/**
 * Drift against the last accepted drop: the population stability index (PSI) of the label distribution
 * and of the text-length histogram, and the reference file that carries both from one drop to the next.
 *
 *   PSI = sum over bins i of (a_i - e_i) * ln(a_i / e_i)
 *
 * a_i is this drop's share of rows in bin i, e_i the reference's; a share of 0 is replaced by
 * EPSILON (1e-4) so that an empty bin counts as a large, finite shift. PSI is 0 for identical
 * distributions; by the usual rule of thumb < 0.1 is stable, 0.1-0.25 a moderate and > 0.25 a large shift.
 */

const fs = require('fs');
const { InputFileError } = require('../csvstream');

const EPSILON = 1e-4;
/** Lower edges of the text-length bins in characters (UTF-16 code units); the last bin is [280, inf). */
const LENGTH_EDGES = Object.freeze([0, 20, 40, 60, 80, 100, 140, 200, 280]);
const FORMULA = 'PSI = sum_i (a_i - e_i) * ln(a_i / e_i); a_i = share of this drop in bin i, e_i = share of the reference; shares of 0 replaced by 1e-4';
const REFERENCE_KIND = 'retraind-data-reference';

/** Index of the length bin holding a text of `length` characters. */
function lengthBin(length) {
  let bin = LENGTH_EDGES.length - 1;
  while (length < LENGTH_EDGES[bin]) bin -= 1;
  return bin;
}

/** Human names of the length bins: '[0,20)', ..., '[280,inf)'. */
function binNames() {
  return LENGTH_EDGES.map((lo, i) => `[${lo},${i + 1 < LENGTH_EDGES.length ? LENGTH_EDGES[i + 1] : 'inf'})`);
}

/** PSI of two count vectors over the same bins (see the module comment). */
function psi(actualCounts, expectedCounts) {
  const actualTotal = actualCounts.reduce((a, b) => a + b, 0);
  const expectedTotal = expectedCounts.reduce((a, b) => a + b, 0);
  let sum = 0;
  for (let i = 0; i < actualCounts.length; i += 1) {
    const a = Math.max(actualTotal > 0 ? actualCounts[i] / actualTotal : 0, EPSILON);
    const e = Math.max(expectedTotal > 0 ? expectedCounts[i] / expectedTotal : 0, EPSILON);
    sum += (a - e) * Math.log(a / e);
  }
  return sum;
}

/** The reference document for this drop: label counts over the allowed labels and the length histogram. */
function buildReference(labels, labelCounts, lengthCounts, passed) {
  return {
    kind: REFERENCE_KIND,
    version: 1,
    passed,
    rows: lengthCounts.reduce((a, b) => a + b, 0),
    label_counts: Object.fromEntries(labels.map((l) => [l, labelCounts.get(l) || 0])),
    length_edges: [...LENGTH_EDGES],
    length_bins: binNames(),
    length_counts: [...lengthCounts],
  };
}

/** Reads and checks a reference file; a missing or malformed one is an input error (exit 2). */
async function readReference(filePath) {
  let doc;
  try {
    doc = JSON.parse(await fs.promises.readFile(filePath, 'utf8'));
  } catch (err) {
    throw new InputFileError(filePath, err.code === 'ENOENT' ? 'no such file' : `not a JSON reference (${err.message})`);
  }
  const edgesMatch = doc && Array.isArray(doc.length_edges) && doc.length_edges.join() === LENGTH_EDGES.join();
  const countsOk = doc && Array.isArray(doc.length_counts) && doc.length_counts.length === LENGTH_EDGES.length
    && doc.length_counts.every((n) => Number.isFinite(n) && n >= 0);
  if (!doc || doc.kind !== REFERENCE_KIND || !edgesMatch || !countsOk || typeof doc.label_counts !== 'object' || doc.label_counts === null) {
    throw new InputFileError(filePath, `not a ${REFERENCE_KIND} written by check-data.js --write-reference`);
  }
  return doc;
}

/** Compares this drop with a reference: returns {drift, problems} (drift_labels, drift_lengths above their limits). */
function compareWithReference(reference, referencePath, labelCounts, lengthCounts, settings, scope) {
  const names = [...new Set([...Object.keys(reference.label_counts), ...settings.labels])];
  const labelPsi = psi(names.map((l) => labelCounts.get(l) || 0), names.map((l) => Number(reference.label_counts[l]) || 0));
  const lengthPsi = psi(lengthCounts, reference.length_counts);
  const drift = {
    formula: FORMULA,
    reference: referencePath,
    reference_rows: reference.rows,
    label_psi: round(labelPsi),
    length_psi: round(lengthPsi),
    max_label_psi: settings.maxLabelPsi,
    max_length_psi: settings.maxLengthPsi,
    length_bins: binNames(),
  };
  const problems = [];
  if (labelPsi > settings.maxLabelPsi) {
    problems.push({
      check: 'drift_labels', file: scope, psi: drift.label_psi, threshold: settings.maxLabelPsi,
      message: `${scope}: the label distribution drifted from the reference (PSI ${drift.label_psi} above the limit of ${settings.maxLabelPsi})`,
    });
  }
  if (lengthPsi > settings.maxLengthPsi) {
    problems.push({
      check: 'drift_lengths', file: scope, psi: drift.length_psi, threshold: settings.maxLengthPsi,
      message: `${scope}: the text-length distribution drifted from the reference (PSI ${drift.length_psi} above the limit of ${settings.maxLengthPsi})`,
    });
  }
  return { drift, problems };
}

/** Rounds to 4 decimals for the report. */
function round(x) {
  return Math.round(x * 1e4) / 1e4;
}

module.exports = { psi, lengthBin, binNames, buildReference, readReference, compareWithReference, LENGTH_EDGES, EPSILON, FORMULA };
