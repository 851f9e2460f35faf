'use strict';

const fs = require('fs');
const { cleanAndTokenize } = require('../textclean');
const { TEXTS, GOLDEN_PATH, goldenCases, serialize } = require('../golden');

const golden = JSON.parse(fs.readFileSync(GOLDEN_PATH, 'utf8'));

describe('golden vectors (golden/textclean.json)', () => {
  test('cover the listed inputs, in order', () => {
    expect(golden.map((c) => c.text)).toEqual(TEXTS);
    expect(golden.length).toBeGreaterThanOrEqual(40);
  });
  test.each(golden.map((c) => [JSON.stringify(c.text), c]))('cleanAndTokenize(%s)', (_, c) => {
    expect(cleanAndTokenize(c.text)).toEqual(c.tokens);
  });
  test('the file is exactly what golden.js writes', () => {
    expect(fs.readFileSync(GOLDEN_PATH, 'utf8')).toBe(serialize(goldenCases()));
  });
});
