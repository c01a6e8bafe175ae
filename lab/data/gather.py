"""Batches of uint8 images gathered from host memory or a memory-mapped file onto the device.

A set that does not fit on the training device waits elsewhere (`lab.data.placement`), and each
batch is gathered by index there and copied over. On CUDA a background thread gathers the next
batches into pinned memory and copies them on a side stream while the GPU computes; elsewhere
the gather simply happens when the batch is asked for. Only indices cross into this module:
the random order and the augmentation stay with the loader, so a batch is the same bytes
wherever its images waited.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

PREFETCH = 3  # batches gathered ahead on CUDA
_END = object()
T = TypeVar("T")


class Gathered:
    """(N,H,W,3) uint8 rows on the host: an array in host memory (`host`) or a memmap of the
    cache with the part's row numbers in it (`disk`)."""

    def __init__(self, rows: np.ndarray, index: np.ndarray | None, device: torch.device,
                 mode: str) -> None:
        self.rows, self.index, self.device, self.mode = rows, index, device, mode
        self.num_samples = len(index) if index is not None else len(rows)
        self.pin = device.type == "cuda"

    @classmethod
    def in_host_memory(cls, pool: np.ndarray, index: np.ndarray | None,
                       device: torch.device) -> Gathered:
        """Copy the part's rows out of `pool` (a memmap: read once) into host memory, pinned
        on CUDA so each batch's copy to the device is asynchronous."""
        n = len(index) if index is not None else len(pool)
        buf = torch.empty((n, *pool.shape[1:]), dtype=torch.uint8,
                          pin_memory=device.type == "cuda").numpy()
        if index is None:
            buf[...] = pool
        else:
            np.take(pool, index, axis=0, out=buf)
        return cls(buf, None, device, "host")

    def _gather(self, start: int, stop: int, order: np.ndarray | None) -> Tensor:
        """The batch's rows as one host tensor (pinned on CUDA), in the batch's order."""
        out = torch.empty((stop - start, *self.rows.shape[1:]), dtype=torch.uint8,
                          pin_memory=self.pin)
        if order is None and self.index is None:
            out.numpy()[...] = self.rows[start:stop]
            return out
        picks = np.arange(start, stop) if order is None else order[start:stop]
        np.take(self.rows, picks if self.index is None else self.index[picks], axis=0,
                out=out.numpy())
        return out

    def _to_device(self, host: Tensor) -> Tensor:
        # NCHW contiguous, the layout a device-resident set's index_select gives: the same bytes
        # in the same layout make the same floats downstream.
        return host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()

    def batches(self, spans: list[tuple[int, int]], order: Tensor | None) -> Iterator[Tensor]:
        """The uint8 (B,3,H,W) batches of `spans` ((start, stop) into `order`, or into the part
        itself when `order` is None), on the device."""
        host_order = order.cpu().numpy() if order is not None else None
        if self.device.type != "cuda":
            for start, stop in spans:
                yield self._to_device(self._gather(start, stop, host_order))
            return
        yield from self._prefetched(spans, host_order)

    def _prefetched(self, spans: list[tuple[int, int]],
                    order: np.ndarray | None) -> Iterator[Tensor]:
        stream = torch.cuda.Stream(self.device)

        def copied() -> Iterator[tuple[Tensor, torch.cuda.Event]]:  # runs in the thread
            with torch.cuda.device(self.device), torch.cuda.stream(stream):
                for start, stop in spans:
                    x = self._to_device(self._gather(start, stop, order))
                    done = torch.cuda.Event()
                    done.record(stream)
                    yield x, done

        current = torch.cuda.current_stream(self.device)
        for x, done in ahead(copied(), PREFETCH):
            current.wait_event(done)
            x.record_stream(current)  # the allocator must not reuse it while we compute
            yield x


def ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, computed by a background thread up to `depth` items ahead of the consumer.
    An exception in the thread is raised in the consumer; a consumer that stops early stops
    the thread (and closes `items` there, in the thread that ran it)."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="lab-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
