'use strict';
/** check-data.js over a whole drop: duplicates, conflicts, latin-1 share, drift against a reference, options. */

const fs = require('fs');
const path = require('path');
const { makeTempDir, writeFile, runScript } = require('./cliharness');

let dir;
beforeAll(() => { dir = makeTempDir(); });
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Runs check-data.js on input paths and returns {code, stdout, stderr, report}. */
function checkPaths(inputs, name, extra = []) {
  const report = path.join(dir, `${name}.report.json`);
  const result = runScript('check-data.js', ['--report', report, ...extra, ...inputs]);
  return { ...result, report: fs.existsSync(report) ? JSON.parse(fs.readFileSync(report, 'utf8')) : null };
}

/** CSV text from [text, label] rows. */
function csv(rows) {
  return `text,sentiment\n${rows.map(([text, label]) => `"${text}",${label}`).join('\n')}\n`;
}

/** n rows cycling through the labels by weight, each text `len` characters long and distinct. */
function rows(n, weights, len) {
  const labels = Object.entries(weights).flatMap(([label, w]) => Array(w).fill(label));
  return Array.from({ length: n }, (_, i) => {
    const base = `tweet ${i} `;
    return [base + 'y'.repeat(Math.max(0, len - base.length)), labels[i % labels.length]];
  });
}

describe('duplicates and conflicting labels', () => {
  const dupRows = [
    ['same text', 'positive'], ['other', 'negative'], ['  same text ', 'positive'], ['meh', 'neutral'],
    ['same text', 'negative'], ['other', 'negative'],
  ];
  test('are counted across files (trimmed text) and pass within the limits', () => {
    const a = writeFile(dir, 'dupa.csv', csv(dupRows.slice(0, 4)));
    const b = writeFile(dir, 'dupb.csv', csv(dupRows.slice(4)));
    const result = checkPaths([a, b], 'dup', ['--max-conflict-share', '0.5']);
    expect(result.code).toBe(0);
    expect(result.report).toMatchObject({
      duplicate_texts: 2, duplicate_rows: 3, conflicting_texts: 1, conflicting_rows: 3, duplicate_share: 0.5, conflict_share: 0.5,
    });
  });
  test('above --max-duplicate-share: duplicate per file, with lines', () => {
    const result = checkPaths([writeFile(dir, 'dup2.csv', csv(dupRows))], 'dup2', ['--max-duplicate-share', '0.4', '--max-conflict-share', '1']);
    expect(result.code).toBe(1);
    expect(result.report.problems).toEqual([expect.objectContaining({
      check: 'duplicate', file: 'dup2.csv', count: 3, lines: [4, 6, 7], duplicate_rows: 3, duplicate_texts: 2,
    })]);
  });
  test('above --max-conflict-share (default 0.05): conflicting_labels', () => {
    const result = checkPaths([writeFile(dir, 'conflict.csv', csv(dupRows))], 'conflict');
    expect(result.code).toBe(1);
    expect(result.report.problems).toEqual([expect.objectContaining({
      check: 'conflicting_labels', file: 'conflict.csv', count: 1, lines: [6], conflicting_rows: 3, conflicting_texts: 1,
    })]);
  });
});

describe('encoding', () => {
  /** A CSV whose first `latin1` of `n` rows carry a latin-1 byte (é as 0xE9). */
  function latin1File(name, n, latin1) {
    const parts = [Buffer.from('text,sentiment\n')];
    for (let i = 0; i < n; i += 1) {
      const label = ['positive', 'negative', 'neutral'][i % 3];
      parts.push(Buffer.from(`caf${i}`), Buffer.from(i < latin1 ? [0xe9] : [0x65]), Buffer.from(`,${label}\n`));
    }
    return writeFile(dir, name, Buffer.concat(parts));
  }
  test('a latin-1 share within --max-latin1-share passes, counted per file', () => {
    const result = checkPaths([latin1File('some.csv', 10, 5)], 'some');
    expect(result.code).toBe(0);
    expect(result.report).toMatchObject({ latin1_rows: 5, per_file: [{ file: 'some.csv', rows: 10, latin1_rows: 5, latin1_share: 0.5 }] });
  });
  test('above the share: encoding, with the first lines', () => {
    const result = checkPaths([latin1File('most.csv', 10, 6)], 'most');
    expect(result.code).toBe(1);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'encoding', file: 'most.csv', count: 6, lines: [2, 3, 4, 5, 6], share: 0.6 })]);
    expect(result.report.problems[0].message).toContain('decoded as latin-1');
  });
});

describe('drift against a reference', () => {
  const base = rows(300, { negative: 4, neutral: 4, positive: 2 }, 90);
  let reference;
  beforeAll(() => {
    reference = path.join(dir, 'reference.json');
    const result = checkPaths([writeFile(dir, 'base.csv', csv(base))], 'base', ['--write-reference', reference]);
    expect(result.code).toBe(0);
  });
  test('--write-reference writes the label counts and the length histogram', () => {
    expect(JSON.parse(fs.readFileSync(reference, 'utf8'))).toEqual({
      kind: 'retraind-data-reference', version: 1, passed: true, rows: 300,
      label_counts: { negative: 120, neutral: 120, positive: 60 },
      length_edges: [0, 20, 40, 60, 80, 100, 140, 200, 280],
      length_bins: ['[0,20)', '[20,40)', '[40,60)', '[60,80)', '[80,100)', '[100,140)', '[140,200)', '[200,280)', '[280,inf)'],
      length_counts: [0, 0, 0, 0, 300, 0, 0, 0, 0],
    });
  });
  test('the same distribution passes with PSI 0', () => {
    const same = writeFile(dir, 'same.csv', csv(rows(100, { negative: 4, neutral: 4, positive: 2 }, 95)));
    const result = checkPaths([same], 'same', ['--reference', reference]);
    expect(result.code).toBe(0);
    expect(result.report.drift).toMatchObject({ label_psi: 0, length_psi: 0, reference: 'reference.json', max_label_psi: 0.2, max_length_psi: 0.25 });
    expect(result.report.drift.formula).toContain('ln(a_i / e_i)');
  });
  test('skewed labels and lengths fail with drift_labels and drift_lengths', () => {
    const skewed = writeFile(dir, 'skewed.csv', csv(rows(100, { negative: 1, neutral: 1, positive: 8 }, 150)));
    const result = checkPaths([skewed], 'skewed', ['--reference', reference]);
    expect(result.code).toBe(1);
    expect(result.report.problems.map((p) => [p.check, p.file])).toEqual([['drift_labels', 'skewed.csv'], ['drift_lengths', 'skewed.csv']]);
    expect(result.report.drift.label_psi).toBeGreaterThan(0.2);
    expect(result.report.drift.length_psi).toBeGreaterThan(0.25);
  });
  test('a reference that is not one is an input error, exit 2', () => {
    const bogus = writeFile(dir, 'bogus.json', '{"kind": "something else"}');
    const result = checkPaths([path.join(dir, 'base.csv')], 'bogus', ['--reference', bogus]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('not a retraind-data-reference');
  });
});

describe('options', () => {
  test('--max-problem-lines bounds the lines kept, the count stays whole', () => {
    const many = [...rows(6, { negative: 1, neutral: 1, positive: 1 }, 30), ...Array.from({ length: 9 }, (_, i) => [`x ${i}`, 'bad'])];
    const result = checkPaths([writeFile(dir, 'many.csv', csv(many))], 'many', ['--max-problem-lines', '2']);
    expect(result.report.problems).toEqual([expect.objectContaining({ check: 'unknown_label', count: 9, lines: [8, 9] })]);
  });
  test.each([
    ['--max-duplicate-share', '1.5'], ['--max-latin1-share', ''], ['--min-rows-per-class', '1.5'],
    ['--max-text-length', '0'], ['--max-label-psi', '-1'], ['--max-problem-lines', 'five'],
  ])('exits 2 on a bad %s %j', (option, value) => {
    const result = runScript('check-data.js', ['--report', path.join(dir, 'unused.json'), option, value, 'x.csv']);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(option);
  });
});
