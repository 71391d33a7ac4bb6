"""Coverage-guided fuzzing of the Kafka codec with atheris (libFuzzer), when it installs.

    python tests/kafka/fuzz/fuzz_codec.py -runs=200000      # or -max_total_time=60

Each input is one raw request frame (what follows the size prefix), fed to the header parser and
the body decoders (generic and hand-written), and, as a byte stream, to the frame decoder. The
only exceptions allowed out are ProtocolError (its subclasses UnsupportedVersion and
FrameTooLarge included) and CorruptBatch from splitting Produce records; anything else (IndexError,
struct.error, MemoryError, a hang) is a bug and makes libFuzzer stop with the input saved.
``test_codec_atheris.py`` runs a short session of it in the test suite.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from streamrt.errors import CorruptBatch, ProtocolError
    from streamrt.kafka import FrameDecoder, decode_request, read_request_header
    from streamrt.kafka._produce import split_batches


def one_input(data: bytes) -> None:
    try:
        header, offset = read_request_header(data)
        body = decode_request(header, data, offset)
        if header.api_key == 0:  # Produce: the records are split as the server does
            for t in body["topic_data"]:
                for p in t["partition_data"]:
                    try:
                        split_batches(p["records"])
                    except CorruptBatch:
                        pass
    except ProtocolError:
        pass
    decoder = FrameDecoder(max_frame_bytes=1 << 16, first_max_frame_bytes=1 << 12)
    try:
        for i in range(0, len(data), 7):  # a stream arriving in small pieces
            for _frame in decoder.feed(data[i:i + 7]):
                decoder.mark_valid()
    except ProtocolError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
