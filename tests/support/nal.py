"""Building H.264 NAL units for tests and benchmarks."""


def escape_emulation(rbsp: bytes) -> bytes:
    """H.264 emulation prevention: never let 00 00 be followed by 00..03 inside a NAL unit."""
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def nal_payload(rbsp: bytes) -> bytes:
    """``rbsp`` escaped and closed with rbsp_trailing_bits, so it never ends in a zero byte."""
    return escape_emulation(rbsp) + b"\x80"
