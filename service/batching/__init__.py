"""Dynamic batching: a request's rows fanned out to its members, cut into batches, run on a device.

The contract, and where each part lives:

- **Admission first** (`ensemble.py`, with the arithmetic in service/admission.py). A request is
  admitted before its images are decoded, by time (its estimated wait and completion under the
  fair cut, against `max_queue_wait_ms` and its deadline), then by memory (room for its rows in
  every member's queue, all or none). Past capacity it is refused before it costs any work.
- **One queue per member** (`queue.py`). Admitted rows wait there; room is reserved while the
  images decode. `max_queue_rows` is a memory cap, all or nothing.
- **One device for every queue** (`device.py`). It owns the run slots (CPU: cores + 1; CUDA:
  the lanes of service/cuda.py) and the one dispatch loop that fills them. A batch opens when a
  row waits and a slot is free; it closes when `max_batch_size` rows wait or when the oldest
  waiting row has waited `max_delay_s` (0 by default: a free slot runs what is queued, and
  batches form from the rows that queue while the slots are busy). A batch alone on a CPU device,
  with nothing else waiting or decoding, takes every slot and runs on the member's wide session.
- **Which rows go next** (`fair_cut.py`): the earliest virtual start (arrival plus the device
  time a request's rows already had) across every member, so a request larger than a batch is
  cut into chunks interleaved with the others, and a stream of small requests cannot starve it.

Every future is resolved on every path: with its outputs; `InferenceFailed` when its batch
raised (only that batch's requests fail) or the dispatch loop crashed (every request fails at
once); `DeadlineExceeded` when its deadline passed before its rows ran (they are never
evaluated); `NotReady` when the device stops. A request whose client left is dropped before its
rows cost an evaluation. Imports point one way: ensemble and device -> queue -> fair_cut.
"""

from service.batching.device import Device
from service.batching.ensemble import Ensemble, Reservation
from service.batching.queue import MemberQueue, Result, TimedRun

__all__ = ["Device", "Ensemble", "MemberQueue", "Reservation", "Result", "TimedRun"]
