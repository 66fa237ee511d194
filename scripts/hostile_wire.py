"""Raw HTTP/1.1 and HTTP/2 (gRPC) clients for scripts/hostile.py: what a hostile client sends that a
well-behaved library would not (a body declared and never sent, headers without end, a gRPC message
left half-sent, answers never read)."""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Iterator

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from tritonclient.grpc import service_pb2 as pb

INFER = "/inference.GRPCInferenceService/ModelInfer"
STREAM = "/inference.GRPCInferenceService/ModelStreamInfer"


def host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def http_exchange(url: str, head: bytes, pieces: Iterator[bytes] | None = None, wait_s: float = 5.0) -> tuple[int, int]:
    """Send by hand; (the status the server answered within `wait_s` of the last piece, else 0;
    bytes of the answer)."""
    with socket.create_connection(host_port(url), timeout=wait_s) as sock:
        try:
            sock.sendall(head)
            for piece in pieces or ():
                sock.sendall(piece)
        except OSError:  # the server answered and closed while we were still sending
            pass
        answer = b""
        try:
            while chunk := sock.recv(1 << 16):
                answer += chunk
                if _complete(answer):
                    break
        except OSError:
            pass
    status = int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else 0
    return status, len(answer)


def _complete(answer: bytes) -> bool:
    head, sep, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if sep and line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def closed(sock: socket.socket) -> bool:
    """Whether the server closed (or answered on) this connection, without waiting."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1 << 16, socket.MSG_PEEK) == b"" or True
    except OSError:
        return True


def grpc_message(message: object) -> bytes:
    data = message.SerializeToString()
    return struct.pack(">BI", 0, len(data)) + data


class H2:
    """One HTTP/2 connection to the gRPC port, driven by hand."""

    def __init__(self, target: str, *, timeout_s: float = 10) -> None:
        host, port = target.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.flush()
        self.events: list[h2.events.Event] = []
        self.gone = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def open(self, path: str) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ])
        self.flush()
        return stream

    def pump(self, wait_s: float = 0.0, *, ack: bool = True) -> None:
        """Read what the server sent within `wait_s`; `ack`: give back receive window (read the answers)."""
        deadline = time.monotonic() + wait_s
        while not self.gone:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.sock], [], [], max(0.0, left))
            if not readable:
                return
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                self.gone = True
                return
            for event in self.conn.receive_data(data):
                self.events.append(event)
                if ack and isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if isinstance(event, h2.events.ConnectionTerminated):
                    self.gone = True
            self.flush()

    def send(self, stream: int, data: bytes, *, end: bool = False, wait_s: float = 10) -> int:
        """Send as much of `data` as the server's windows allow within `wait_s`; bytes sent."""
        sent, deadline = 0, time.monotonic() + wait_s
        while sent < len(data) and time.monotonic() < deadline and not self.gone:
            window = min(self.conn.local_flow_control_window(stream), self.conn.max_outbound_frame_size)
            if window <= 0:
                self.pump(0.05)
                continue
            piece = data[sent : sent + window]
            self.conn.send_data(stream, piece, end_stream=end and sent + len(piece) == len(data))
            sent += len(piece)
            self.flush()
            self.pump(0)
        return sent

    def resets(self) -> set[int]:
        return {e.stream_id for e in self.events if isinstance(e, h2.events.StreamReset)}

    def ended(self) -> set[int]:
        return {e.stream_id for e in self.events if isinstance(e, h2.events.StreamEnded)}

    def close(self) -> None:
        self.sock.close()


def infer_request(model: str, image: bytes, *, request_id: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(struct.pack("<I", len(image)) + image)
    return request


def too_many_streams() -> type[Exception]:
    return h2.exceptions.TooManyStreamsError
