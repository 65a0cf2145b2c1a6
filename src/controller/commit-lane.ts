/**
 * One lane for every stage → commit → apply sequence of the controller. A change is staged from
 * the state in memory, committed (a store may take milliseconds: etcd is a network round trip),
 * then applied; two sequences interleaved would each stage from a state the other is about to
 * change, and one change would be lost. The lane runs them one after the other, in the order
 * asked. A sequence must not ask the lane again from inside (it would wait for itself).
 */
import type { StagedChange, StateStore } from '../core/ports.js';

export class CommitLane {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `fn` once every sequence asked before has finished; settles as `fn` does. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Stages with `build`, commits, applies: the body of a lane sequence. Resolves with whether there
 * was something to commit (`build` returning null: nothing). When staging or the commit throws,
 * nothing was applied and the error goes to the caller.
 */
export async function commitStaged(store: StateStore, build: () => StagedChange | null): Promise<boolean> {
  const staged = build();
  if (!staged) return false;
  await store.commit(staged.change);
  staged.apply();
  return true;
}
