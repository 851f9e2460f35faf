'use strict';
/** Text cleaning and field decoding shared by preprocess.js and check-data.js (a Python port must agree char for char). */

// The original contract: lowercase, strip non-alphanumerics, drop stop words, split.
// "Alphanumeric" means Unicode letters and numbers (general category L* or N*), whitespace means
// what JavaScript's \s matches. Both come from charclass.json, frozen at one Unicode version
// (tools/gen-charclass.py), so this and the Python port agree whichever Node or Python runs them.
const CHARCLASS = require('./charclass.json');
const STOP_WORDS = new Set(['a', 'an', 'the', 'is', 'in', 'on', 'at']);

/** Regex character-class body for [[first, last], ...] code point ranges. */
function classBody(ranges) {
  return ranges.map(([a, b]) => `\\u{${a.toString(16)}}-\\u{${b.toString(16)}}`).join('');
}
const WS = classBody(CHARCLASS.whitespace);
const NOT_KEPT = new RegExp(`[^${classBody(CHARCLASS.letters_numbers)}${WS}]`, 'gu');
const WHITESPACE = new RegExp(`[${WS}]+`, 'u');

/** Lowercases, strips everything but letters, numbers and whitespace, splits and drops stop words. */
function cleanAndTokenize(text) {
  if (typeof text !== 'string') throw new TypeError('cleanAndTokenize expects a string');
  // Stripping before lowercasing too keeps code points newer than charclass.json from reaching
  // toLowerCase, whose mappings for them depend on the runtime's Unicode version.
  const lowered = text.replace(NOT_KEPT, '').toLowerCase();
  return lowered.replace(NOT_KEPT, '').split(WHITESPACE).filter((t) => t.length > 0 && !STOP_WORDS.has(t));
}

// fatal: invalid UTF-8 throws instead of yielding U+FFFD; ignoreBOM false (the default) drops a leading BOM.
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes one field's bytes: UTF-8 when valid (leading BOM removed), else latin-1; returns {text, encoding}. */
function decodeField(buffer) {
  try {
    return { text: UTF8.decode(buffer), encoding: 'utf-8' };
  } catch (err) {
    // Checked by code, not instanceof TypeError: Node's error comes from another realm under Jest.
    if (err.code !== 'ERR_ENCODING_INVALID_ENCODED_DATA') throw err;
    return { text: buffer.toString('latin1'), encoding: 'latin-1' };
  }
}

module.exports = { cleanAndTokenize, decodeField, STOP_WORDS };
