#!/usr/bin/env python3
"""Writes a small seed corpus of valid wire-format events for the fuzzer.

Each seed is magic byte 0, a 4-byte big-endian schema id from
schemas/manifest.toml, and an Avro binary body written by hand here, so
that libFuzzer starts from inputs that reach the Avro decoder instead of
having to discover the header first.
"""
import os
import struct
import sys


def zigzag(n: int) -> bytes:
    """Avro long/int: zig-zag then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def string(s: str) -> bytes:
    raw = s.encode()
    return zigzag(len(raw)) + raw


def wire(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def order_placed_v2() -> bytes:
    lines = [("SKU-00001", 2, 1999), ("SKU-00002", 1, 500)]
    body = string("O-seed-1") + string("C-000001")
    body += zigzag(len(lines))
    for sku, qty, price in lines:
        body += string(sku) + zigzag(qty) + zigzag(price)
    body += zigzag(0)  # end of array blocks
    body += string("EUR") + zigzag(1767225600000)
    return wire(2, body)


def payment_captured() -> bytes:
    return wire(3, string("O-seed-1") + zigzag(4498) + zigzag(1767225601000))


def stock_received() -> bytes:
    return wire(20, string("SKU-00001") + zigzag(50) + zigzag(1767225600000))


def main() -> None:
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    seeds = {
        "order_placed_v2": order_placed_v2(),
        "payment_captured": payment_captured(),
        "stock_received": stock_received(),
    }
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    print(f"fuzz seeds: {len(seeds)} written to {folder}")


if __name__ == "__main__":
    main()
