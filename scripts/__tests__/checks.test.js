'use strict';
/** Unit tests of the gate's pure parts: PSI, length bins, label hints, the duplicate index, byte sniffing. */

const { psi, lengthBin, EPSILON } = require('../checks/drift');
const { suggestLabel } = require('../checks/labels');
const { DuplicateIndex, textHash, NEW_TEXT, REPEAT, REPEAT_NEW_LABEL } = require('../checks/duplicates');
const { classify } = require('../checks/sniff');
const { overLimit } = require('../checks/scan');

describe('psi', () => {
  test('is 0 for proportional counts', () => {
    expect(psi([10, 20, 30], [1, 2, 3])).toBeCloseTo(0, 12);
  });
  test('follows sum (a - e) ln(a / e)', () => {
    const expected = (0.6 - 0.5) * Math.log(0.6 / 0.5) + (0.4 - 0.5) * Math.log(0.4 / 0.5);
    expect(psi([6, 4], [5, 5])).toBeCloseTo(expected, 12);
  });
  test('replaces an empty bin with epsilon', () => {
    const expected = (1 - 0.5) * Math.log(1 / 0.5) + (EPSILON - 0.5) * Math.log(EPSILON / 0.5);
    expect(psi([10, 0], [5, 5])).toBeCloseTo(expected, 12);
  });
});

describe('lengthBin', () => {
  test.each([[0, 0], [19, 0], [20, 1], [99, 4], [100, 5], [279, 7], [280, 8], [1e6, 8]])('%i chars is bin %i', (length, bin) => {
    expect(lengthBin(length)).toBe(bin);
  });
});

describe('suggestLabel', () => {
  const allowed = ['negative', 'neutral', 'positive'];
  test.each([
    ['POS', 'positive'], ['neg', 'negative'], ['Positive ', 'positive'], ['NEUTRAL', 'neutral'], ['neu', 'neutral'],
    ['n', null], ['ne', null], ['happy', null], ['', null], ['positively', null],
  ])('%j -> %j', (label, hint) => {
    expect(suggestLabel(label, allowed)).toBe(hint);
  });
});

describe('DuplicateIndex', () => {
  test('tells new texts, repeats and repeats with a new label; totals them', () => {
    const index = new DuplicateIndex(4);
    expect(index.add(textHash('a'), 1)).toBe(NEW_TEXT);
    expect(index.add(textHash('a'), 1)).toBe(REPEAT);
    expect(index.add(textHash('a'), 2)).toBe(REPEAT_NEW_LABEL);
    expect(index.add(textHash('b'), 4)).toBe(NEW_TEXT);
    expect(index.add(textHash('c'), 4)).toBe(NEW_TEXT);
    expect(index.add(textHash('c'), 4)).toBe(REPEAT);
    expect(index.totals()).toEqual({ distinct_texts: 3, duplicate_texts: 2, duplicate_rows: 3, conflicting_texts: 1, conflicting_rows: 3 });
  });
  test('textHash spreads near-identical texts', () => {
    const hashes = new Set(Array.from({ length: 100000 }, (_, i) => textHash(`tweet ${i}`)));
    expect(hashes.size).toBe(100000);
    expect(textHash('ab')).not.toBe(textHash('ba'));
    expect(Number.isSafeInteger(textHash('x'.repeat(1000)))).toBe(true);
  });
});

describe('classify', () => {
  test('sees a UTF-8 BOM, UTF-16 with and without BOM, and control bytes', () => {
    expect(classify(Buffer.from('\ufefftext,sentiment\n'))).toMatchObject({ bom: true, utf16: null, controlBytes: 0 });
    expect(classify(Buffer.from([0xfe, 0xff, 0, 0x74])).utf16).toMatch(/big-endian/);
    expect(classify(Buffer.from('text,sentiment\nhello,positive\n', 'utf16le')).utf16).toMatch(/little-endian \(no byte order mark\)/);
    expect(classify(Buffer.from('a\u0000b\u0001c\td\r\n')).controlBytes).toBe(2);
  });

  test('names archives, spreadsheets and compressed files saved under a .csv name', () => {
    const zlib = require('zlib');
    expect(classify(Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0])).format.what).toMatch(/ZIP archive.*xlsx/);
    expect(classify(Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0])).format.what).toMatch(/\.xls/);
    expect(classify(zlib.gzipSync('sentiment,text\npositive,hi\n')).format.what).toBe('gzip-compressed');
    expect(classify(Buffer.from('%PDF-1.7\n')).format.what).toMatch(/PDF/);
    expect(classify(Buffer.from('sentiment,text\npositive,PK\u0003\u0004\n')).format).toBeNull(); // only at the start
  });
});

describe('overLimit', () => {
  test('counts code points, not UTF-16 units', () => {
    expect(overLimit('\u{1F600}'.repeat(3), 3)).toBe(false);
    expect(overLimit('\u{1F600}'.repeat(4), 3)).toBe(true);
    expect(overLimit('abc', 3)).toBe(false);
  });
});
