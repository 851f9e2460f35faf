'use strict';

const { cleanAndTokenize, hasTokens, unicodeTokens, asciiTokens, decodeField, STOP_WORDS } = require('../textclean');

describe('cleanAndTokenize: the original cases', () => {
  test('lowercases', () => {
    expect(cleanAndTokenize('Hello World')).toEqual(['hello', 'world']);
  });
  test('strips punctuation', () => {
    expect(cleanAndTokenize('Hello, world!')).toEqual(['hello', 'world']);
  });
  test('removes stop words', () => {
    expect(cleanAndTokenize('The cat is on the mat')).toEqual(['cat', 'mat']);
  });
  test('splits on runs of spaces, tabs and newlines', () => {
    expect(cleanAndTokenize('  one   two\t\tthree\nfour\r\nfive  ')).toEqual(['one', 'two', 'three', 'four', 'five']);
  });
  test('returns no tokens for an empty string', () => {
    expect(cleanAndTokenize('')).toEqual([]);
  });
  test('keeps numbers', () => {
    expect(cleanAndTokenize('Room 101 at 5pm')).toEqual(['room', '101', '5pm']);
  });
});

describe('cleanAndTokenize: Unicode and social media text', () => {
  test.each([
    ['Café naïve', ['café', 'naïve']],
    ['Ünïcödé', ['ünïcödé']],
    ['Привет, мир!', ['привет', 'мир']],
    ['日本語 中文', ['日本語', '中文']],
  ])('keeps letters of any script: %j', (text, tokens) => {
    expect(cleanAndTokenize(text)).toEqual(tokens);
  });
  test('strips emoji', () => {
    expect(cleanAndTokenize('I love it 😀🎉 👍🏽')).toEqual(['i', 'love', 'it']);
  });
  test('runs a URL together', () => {
    expect(cleanAndTokenize('https://t.co/xyz')).toEqual(['httpstcoxyz']);
  });
  test('strips the @ of a mention', () => {
    expect(cleanAndTokenize('@user')).toEqual(['user']);
  });
  test('strips the # of a hashtag', () => {
    expect(cleanAndTokenize('#happy')).toEqual(['happy']);
  });
  test('throws a TypeError on non-string input', () => {
    for (const value of [undefined, null, 42, ['a'], Buffer.from('a')]) {
      expect(() => cleanAndTokenize(value)).toThrow(TypeError);
    }
  });
  test('stop words are the seven of the original contract', () => {
    expect([...STOP_WORDS].sort()).toEqual(['a', 'an', 'at', 'in', 'is', 'on', 'the']);
  });
  test('tokenizes 1 MB of text correctly and quickly', () => {
    const unit = 'Hello, the World! 123 ';
    const repeats = Math.ceil((1024 * 1024) / unit.length);
    const started = process.hrtime.bigint();
    const tokens = cleanAndTokenize(unit.repeat(repeats));
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    expect(tokens).toHaveLength(3 * repeats);
    expect(tokens.slice(0, 3)).toEqual(['hello', 'world', '123']);
    expect(elapsedMs).toBeLessThan(5000); // generous: it takes tens of milliseconds
  });
});

describe('decodeField', () => {
  test('decodes valid UTF-8', () => {
    expect(decodeField(Buffer.from('café ☕', 'utf8'))).toEqual({ text: 'café ☕', encoding: 'utf-8' });
  });
  test('falls back to latin-1 for bytes that are not valid UTF-8, then tokenizes', () => {
    const decoded = decodeField(Buffer.from([0x63, 0x61, 0x66, 0xe9]));
    expect(decoded).toEqual({ text: 'café', encoding: 'latin-1' });
    expect(cleanAndTokenize(decoded.text)).toEqual(['café']);
  });
  test('removes one leading UTF-8 BOM, and only a leading one', () => {
    expect(decodeField(Buffer.from('\ufeff\ufefftext', 'utf8'))).toEqual({ text: '\ufefftext', encoding: 'utf-8' });
    expect(decodeField(Buffer.from('a\ufeffb', 'utf8')).text).toBe('a\ufeffb');
  });
  test('keeps a BOM in latin-1 fallback, decoded byte by byte', () => {
    expect(decodeField(Buffer.from([0xef, 0xbb, 0xbf, 0xe9]))).toEqual({ text: 'ï»¿é', encoding: 'latin-1' });
  });
  test('an invalid field does not affect the next one', () => {
    expect(decodeField(Buffer.from([0x61, 0xe2, 0x82])).encoding).toBe('latin-1');
    expect(decodeField(Buffer.from('€', 'utf8'))).toEqual({ text: '€', encoding: 'utf-8' });
  });
  test('treats encoded surrogates and overlong forms as invalid UTF-8', () => {
    expect(decodeField(Buffer.from([0xed, 0xa0, 0x80])).encoding).toBe('latin-1');
    expect(decodeField(Buffer.from([0xc0, 0xaf])).encoding).toBe('latin-1');
  });
  test('decodes an empty field', () => {
    expect(decodeField(Buffer.alloc(0))).toEqual({ text: '', encoding: 'utf-8' });
  });
});

describe('the ASCII fast paths agree with the regular expressions', () => {
  const ASCII = Array.from({ length: 128 }, (_, c) => String.fromCharCode(c));
  const AROUND = ['', 'the', 'A', 'is ', ' on', 'Word', 'x1'];

  test('cleanAndTokenize and hasTokens on every pair of ASCII characters, with words around them', () => {
    const differ = [];
    for (const a of ASCII) {
      for (const b of ASCII) {
        for (const around of AROUND) {
          for (const text of [`${a}${b}${around}`, `${around}${a}${b}`, `${a}${around}${b}`]) {
            const expected = unicodeTokens(text);
            if (JSON.stringify(cleanAndTokenize(text)) !== JSON.stringify(expected) || hasTokens(text) !== (expected.length > 0)) differ.push(text);
          }
        }
      }
    }
    expect(differ).toEqual([]);
  });

  test('hasTokens on stop words only, dropped characters, and text past ASCII', () => {
    for (const text of ['', ' ', 'The a an', 'T.h.e!! IS', '...', 'at,in;on', 'the \u00e9', 'the caf\u00e9', '\u3000the\u3000', 'a\u00a0b']) {
      expect([text, hasTokens(text)]).toEqual([text, unicodeTokens(text).length > 0]);
    }
  });

  test('asciiTokens leaves any text past ASCII to the regular expressions', () => {
    expect(asciiTokens('caf\u00e9')).toBeNull();
    expect(asciiTokens('a\u{1f600}')).toBeNull();
  });
});

describe('decodeField agrees with a fatal TextDecoder on every short byte sequence', () => {
  const DECODER = new TextDecoder('utf-8', { fatal: true });
  function reference(buffer) {
    try {
      return { text: DECODER.decode(buffer), encoding: 'utf-8' };
    } catch (err) {
      return { text: buffer.toString('latin1'), encoding: 'latin-1' };
    }
  }

  test('all 1- and 2-byte sequences, all 3-byte ones from the lead bytes of 3-byte forms, 4-byte forms around their limits', () => {
    const sequences = [Buffer.from('\ufeffbom'), Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf])];
    for (let a = 0; a < 256; a += 1) {
      sequences.push(Buffer.from([a]));
      for (let b = 0; b < 256; b += 1) sequences.push(Buffer.from([a, b]));
    }
    const edges = [0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff];
    for (let a = 0xe0; a < 0xf0; a += 1) for (let b = 0x70; b < 0xd0; b += 1) for (const c of edges) sequences.push(Buffer.from([a, b, c]));
    for (let a = 0xf0; a < 0xf8; a += 1) for (const b of edges) for (const c of edges) for (const d of edges) sequences.push(Buffer.from([a, b, c, d]));
    const differ = sequences.filter((s) => JSON.stringify(decodeField(s)) !== JSON.stringify(reference(s))).map((s) => s.toString('hex'));
    expect(differ).toEqual([]);
  });
});
