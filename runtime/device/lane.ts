// The device's processor as one lane: compute runs one piece at a time, in the order asked.
//
// A real device has one processor for its model: the part it runs before sending, and the rest
// of a model it finishes itself when the cloud fails, queue behind each other. The emulated slow
// device sleeps for most of each piece (device.ts `emulate`), and two sleeps that overlap would
// be a device running two inferences at once: a pipelined stream whose requests fall back would
// count 15 local finishes in the time of one. Every piece of device compute goes through here.
export class Lane {
  private tail: Promise<unknown> = Promise.resolve();

  /** Runs `work` after everything already in the lane; its result or error is returned. */
  run<T>(work: () => Promise<T>): Promise<T> {
    const done = this.tail.then(() => work());
    this.tail = done.catch(() => {});
    return done;
  }
}
