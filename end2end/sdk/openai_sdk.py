"""OpenAI's official Python SDK against the studio: run by tests/openai-sdks.spec.ts with the gateway's
address as its one argument. Each check raises on failure; the script prints one line per check."""

import base64
import io
import struct
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1].rstrip("/") + "/v1"
client = OpenAI(base_url=base_url, api_key="sk-python-sdk", max_retries=0, timeout=120)


def png_size(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


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
]:
    check(name, run)
print(f"python openai {openai.__version__}: all passed")
