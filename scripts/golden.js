#!/usr/bin/env node
'use strict';
/** Golden vectors for cleanAndTokenize: the inputs here, the JS results in golden/textclean.json. */

const fs = require('fs');
const path = require('path');
const { cleanAndTokenize } = require('./textclean');

const GOLDEN_PATH = path.join(__dirname, 'golden', 'textclean.json');

// Only characters from Unicode 13 or older, so that Node 18/20 and Python 3.11+ share their properties.
const TEXTS = [
  // The six original cases.
  'Hello World',
  'Hello, world!',
  'The cat is on the mat',
  '  multiple   spaces\tand\t\ttabs\nand\r\nnewlines  ',
  '',
  'Room 101 at 5pm',
  // Stop words, punctuation only, whitespace only.
  'THE A AN IS IN ON AT',
  'The, a. An! is? in; on: at-',
  '...!!! ??? ---',
  ' \t\r\n\v\f ',
  // Unicode letters and numbers are kept.
  'Café naïve Ünïcödé',
  'Привет, мир!',
  '日本語のテキスト 中文',
  '한국어 텍스트',
  'ＡＢＣ１２３',
  '𝐀𝐁𝐂 bold math letters',
  '½ ² Ⅻ roman',
  '٣ apples ١٢٣ and ५',
  // Case mapping subtleties.
  'İstanbul',
  'ΟΔΟΣ',
  'ΟΔΟΣ.ΟΔΟΣ Σ',
  'STRAẞE',
  'Ǆemal',
  '\u212a kelvin',
  'ﬁne ligature',
  // Combining marks, format characters, symbols are stripped.
  'e\u0301 cafe\u0301',
  'हिन्दी ที่',
  'שלום\u200f عالم',
  'zero\u200bwidth',
  'a\u180eb',
  'I love it 😀🎉',
  '👍🏽 thumbs',
  '1\ufe0f\u20e3 keycap',
  'Ⓐ circled',
  'a\u0000b',
  // Social media.
  'https://t.co/xyz',
  '@user hello',
  '#happy #SoHappy',
  'a_b snake_case',
  "don't won’t",
  'A.I. AT&T in-depth',
  'email: Someone@Example.COM',
  // Whitespace as JavaScript's \s sees it (split) and what it does not (stripped, joining).
  'non\u00a0breaking',
  'line\u2028separator\u2029para',
  'byte\ufefforder mark',
  'ideographic\u3000space',
  'ogham\u1680space hair\u200aspace narrow\u202fspace math\u205fspace',
  'file\u001cseparator unit\u001fseparator',
  'next\u0085line',
];

/** Computes the golden entries from the current implementation. */
function goldenCases() {
  return TEXTS.map((text) => ({ text, tokens: cleanAndTokenize(text) }));
}

/** Serializes cases one per line, escaping invisible and combining characters so the file reads unambiguously. */
function serialize(cases) {
  const escapeUnit = (unit) => `\\u${unit.charCodeAt(0).toString(16).padStart(4, '0')}`;
  const escape = (json) => json.replace(/(?! )[\p{C}\p{Z}\p{M}]/gu, (c) => c.split('').map(escapeUnit).join(''));
  return `[\n${cases.map((c) => `  ${escape(JSON.stringify(c))}`).join(',\n')}\n]\n`;
}

if (require.main === module) {
  const target = process.argv[2] || GOLDEN_PATH;
  fs.writeFileSync(target, serialize(goldenCases()));
  process.stdout.write(`wrote ${TEXTS.length} golden cases to ${target}\n`);
}

module.exports = { TEXTS, GOLDEN_PATH, goldenCases, serialize };
