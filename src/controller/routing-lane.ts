/**
 * One routing change at a time: operations and reconcile repairs both run their apply() through
 * the same lane, so a repair decided on an older desired state can never land after (and undo)
 * the routes of an operation accepted meanwhile. Runs tasks in the order they ask; a task that
 * fails does not stop the ones after it.
 */
export class RoutingLane {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `task` once every task asked before it has ended; resolves or rejects as it does. */
  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}
