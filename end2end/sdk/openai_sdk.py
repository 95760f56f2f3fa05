"""OpenAI's official Python SDK against the studio: run by tests/openai-sdks.spec.ts with the gateway's
address as its one argument. Each check raises on failure; the script prints one line per check."""

import base64
import io
import struct
import sys
import zlib

import openai
from openai import OpenAI

base_url = sys.argv[1].rstrip("/") + "/v1"
client = OpenAI(base_url=base_url, api_key="sk-python-sdk", max_retries=0, timeout=120)


def png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def png(width: int, height: int, pixel) -> bytes:
    """A PNG of `pixel(x, y)` (RGB or RGBA tuples), written without any imaging library."""
    channels = len(pixel(0, 0))
    rows = b"".join(
        b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = 2 if channels == 3 else 6
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


RED = (200, 30, 40)


def pixels(b64: str):
    """The decoded RGB rows of a PNG the studio made (8-bit RGB, any filter)."""
    data = base64.b64decode(b64)
    width, height = struct.unpack(">II", data[16:24])
    assert data[24:26] == b"\x08\x02", "not 8-bit RGB"
    at, idat = 8, b""
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if data[at + 4 : at + 8] == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    raw = zlib.decompress(idat)
    stride = width * 3
    rows, previous = [], bytearray(stride)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - 3] if i >= 3 else 0
            up = previous[i]
            up_left = previous[i - 3] if i >= 3 else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                estimate = left + up - up_left
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - up_left))
                nearest = (left, up, up_left)[distances.index(min(distances))]
                line[i] = (line[i] + nearest) & 0xFF
        rows.append(bytes(line))
        previous = line
    return lambda x, y: tuple(rows[y][x * 3 : x * 3 + 3])


def edit_a_file():
    photo = io.BytesIO(png(320, 256, lambda x, y: RED))
    photo.name = "photo.png"
    answer = client.images.edit(model="gpt-image-1", image=photo, prompt="the same, at night", n=2)
    assert len(answer.data) == 2, answer
    for image in answer.data:
        assert png_size(image.b64_json) == (320, 256)
    # A list of files goes as `image[]`, as the SDK names it.
    listed = io.BytesIO(png(256, 256, lambda x, y: RED))
    listed.name = "listed.png"
    answer = client.images.edit(image=[listed], prompt="fox", size="512x256")
    assert png_size(answer.data[0].b64_json) == (512, 256)


def edit_with_a_mask():
    photo = io.BytesIO(png(256, 256, lambda x, y: RED))
    photo.name = "photo.png"
    mask = io.BytesIO(png(256, 256, lambda x, y: (0, 0, 0, 0 if x < 128 else 255)))
    mask.name = "mask.png"
    answer = client.images.edit(image=photo, mask=mask, prompt="a window on the left")
    pixel = pixels(answer.data[0].b64_json)
    assert all(pixel(x, 100) == RED for x in range(136, 256, 8)), "the opaque half was kept"
    assert sum(pixel(x, 100) != RED for x in range(0, 120, 4)) > 20, "the transparent half changed"


def edit_streaming_and_refusals():
    photo = io.BytesIO(png(256, 256, lambda x, y: RED))
    photo.name = "photo.png"
    stream = client.images.edit(image=photo, prompt="fox", stream=True, partial_images=1)
    kinds = [event.type for event in stream]
    assert kinds[-1] == "image_edit.completed", kinds
    assert set(kinds) <= {"image_edit.partial_image", "image_edit.completed"}, kinds
    try:
        client.images.edit(image=io.BytesIO(b"not a picture"), prompt="fox")
    except openai.BadRequestError as error:
        assert error.body["param"] == "image", error.body
    else:
        raise AssertionError("a file that is not a picture was not refused")
    other = io.BytesIO(png(64, 64, lambda x, y: (0, 0, 0, 0)))
    other.name = "mask.png"
    photo.seek(0)
    try:
        client.images.edit(image=photo, mask=other, prompt="fox")
    except openai.BadRequestError as error:
        assert error.body["param"] == "mask", error.body
    else:
        raise AssertionError("a mask of another size was not refused")


def check(name, run):
    run()
    print(f"ok {name}")


def models():
    listed = client.models.list()
    assert [model.id for model in listed.data] == ["z-image-turbo"], listed


def base64_images():
    answer = client.images.generate(model="gpt-image-1", prompt="a red fox", n=2, size="256x256")
    assert len(answer.data) == 2, answer
    for image in answer.data:
        assert image.url is None
        assert png_size(image.b64_json) == (256, 256)
    assert answer.usage is not None and answer.usage.total_tokens == 0, answer.usage
    assert answer.output_format == "png" and answer.background == "opaque", answer


def url_images():
    raw = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse", size="1792x1024", response_format="url"
    )
    assert raw.headers["x-zimage-model"] == "z-image-turbo", raw.headers
    answer = raw.parse()
    url = answer.data[0].url
    assert url and url.startswith(sys.argv[1].rstrip("/")), url


def librechat_body():
    answer = client.images.generate(
        model="gpt-image-1",
        prompt="a red fox in snow",
        n=1,
        background="auto",
        output_format="png",
        output_compression=100,
        quality="auto",
        size="auto",
    )
    assert png_size(answer.data[0].b64_json) == (1024, 1024)


def jpeg():
    answer = client.images.generate(
        model="gpt-image-1", prompt="fox", size="256x256", output_format="jpeg", output_compression=60
    )
    assert base64.b64decode(answer.data[0].b64_json)[:3] == b"\xff\xd8\xff", "not a JPEG"


def streaming():
    stream = client.images.generate(
        model="gpt-image-1", prompt="fox", size="256x256", stream=True, partial_images=2
    )
    kinds = []
    for event in stream:
        kinds.append(event.type)
        if event.type == "image_generation.partial_image":
            assert event.partial_image_index == kinds.count(event.type) - 1
            assert base64.b64decode(event.b64_json)
        elif event.type == "image_generation.completed":
            assert png_size(event.b64_json) == (256, 256)
            assert event.usage.total_tokens == 0
    assert kinds[-1] == "image_generation.completed" and kinds.count(kinds[-1]) == 1, kinds
    assert 1 <= kinds.count("image_generation.partial_image") <= 2, kinds


def refusals():
    try:
        client.images.generate(prompt="fox", size="2048x2048")
    except openai.BadRequestError as error:
        assert error.status_code == 400
        assert error.body["param"] == "size", error.body
    else:
        raise AssertionError("a 2048x2048 size was not refused")
    try:
        client.images.generate(prompt="fox", background="transparent")
    except openai.BadRequestError as error:
        assert error.body["param"] == "background", error.body
    else:
        raise AssertionError("a transparent background was not refused")


for name, run in [
    ("models", models),
    ("base64 images, n=2", base64_images),
    ("url images", url_images),
    ("LibreChat's body", librechat_body),
    ("jpeg", jpeg),
    ("streaming with partial images", streaming),
    ("refusals", refusals),
    ("edit a file, n=2, image[]", edit_a_file),
    ("edit with a mask", edit_with_a_mask),
    ("edit streaming and refusals", edit_streaming_and_refusals),
]:
    check(name, run)
print(f"python openai {openai.__version__}: all passed")
