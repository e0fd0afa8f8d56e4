import { AnswerCache, type Encoded } from '../../../services/ctlog/read-path';

/** The kept answers of the read path stay within their byte budget, least recently used out. */

const answer = (bytes: number): Encoded => ({
  status: 200,
  headers: [],
  body: Buffer.alloc(bytes),
});

describe('AnswerCache', () => {
  it('keeps answers within the budget (body and key bytes), dropping the least recently used', () => {
    const cache = new AnswerCache(3 * (100 + 2));
    cache.set('/a', answer(100));
    cache.set('/b', answer(100));
    cache.set('/c', answer(100));
    expect(cache.size).toBe(3);
    expect(cache.get('/a')).toBeDefined(); // /a is now the most recently used
    cache.set('/d', answer(100));
    expect(cache.size).toBe(3);
    expect(cache.get('/b')).toBeUndefined();
    for (const k of ['/a', '/c', '/d']) expect([k, cache.get(k)?.body.length]).toEqual([k, 100]);
  });

  it('never keeps an answer bigger than the whole budget, and keeps the first of a key', () => {
    const cache = new AnswerCache(1000);
    cache.set('/big', answer(1000));
    expect(cache.get('/big')).toBeUndefined();
    const first = answer(10);
    cache.set('/k', first);
    cache.set('/k', answer(20));
    expect(cache.get('/k')).toBe(first);
    // One big answer pushes out every smaller one it needs room from.
    for (let i = 0; i < 9; i++) cache.set(`/s${i}`, answer(90));
    cache.set('/m', answer(900));
    expect(cache.get('/m')?.body.length).toBe(900);
    expect(cache.get('/s0')).toBeUndefined();
  });
});
