"""Response models of the /v1 API: what OpenAPI documents and what clients parse."""

from __future__ import annotations

from pydantic import BaseModel, Field


class PredictionOut(BaseModel):
    index: int = Field(description="Class index, ILSVRC-2012 order (sorted wnids).")
    wnid: str = Field(description="WordNet id of the class (empty when the repository has none).")
    label: str
    probability: float


class ImageResult(BaseModel):
    predictions: list[PredictionOut]
    evaluations: int | None = Field(
        None, description="crops=/ensemble=adaptive or partial=true: this image's evaluations (crops x members run).",
    )
    rung: str | None = Field(
        None, description="The last Table 3 rung this image completed (e.g. 10x7); null if the deadline cut the first.",
    )
    stop: str | None = Field(
        None, description="Why its walk ended: confident, last_rung, no_time (the next rung would not fit) "
        "or deadline.",
    )


class RunTimings(BaseModel):
    model: str = Field(description="The member these rows ran on.")
    batches: int = Field(description="Batches the request's rows took part in on this member.")
    queue: float = Field(description="Admission to the first batch starting, in ms.")
    copy_in: float = Field(description="Rows into the device's input (joined with the batch's others), ms.")
    compute: float = Field(description="The runs, waiting for the device included, in ms.")
    copy_out: float = Field(description="Probabilities back to the host, in ms.")
    inference: float = Field(description="First batch starting to last ending, in ms.")


class Timings(BaseModel):
    """Where a request's time went, in ms: sums over images (decode, crops) and members (copies,
    compute); `runs` has each member's part."""

    decode: float = Field(0.0, description="Decoding the images, in ms (summed over images).")
    crops: float = Field(0.0, description="Resizing and cropping, in ms (summed over images).")
    preprocess: float = Field(description="Admission to rows ready: waiting for a decode thread, decode, crops (ms).")
    queue: float = Field(description="Waiting for a batch, in ms (slowest member).")
    copy_in: float = Field(0.0, description="Rows to the device, in ms (summed over members).")
    compute: float = Field(0.0, description="Model runs, in ms (summed over members).")
    copy_out: float = Field(0.0, description="Probabilities back to the host, in ms (summed over members).")
    inference: float = Field(description="From the first batch starting to the last ending, in ms.")
    total: float
    runs: list[RunTimings] = Field(default_factory=list, description="Each member's part.")


class ClassifyResponse(BaseModel):
    model: str = Field(description="The ensemble's name.")
    members: list[str] = Field(description="Models whose probabilities were averaged.")
    crops: int
    evaluations: int = Field(description="Model evaluations per image: crops x members (the paper's cost).")
    auto: bool = Field(False, description="Crops and/or members were chosen by crops=auto / ensemble=auto.")
    adaptive: bool = Field(False, description="crops=/ensemble=adaptive: each image stopped on its own rung "
                           "(crops, members and evaluations are then the most any image used).")
    partial: bool = Field(False, description="partial=true and the deadline came first: the average of what finished.")
    trained: bool = Field(description="False when the repository holds random-init weights: answers are noise.")
    predictions: list[PredictionOut] = Field(description="Top-k of the first image.")
    results: list[ImageResult] = Field(description="Top-k of every image, in request order.")
    timings_ms: Timings
    request_id: str


class ErrorOut(BaseModel):
    error: str
    code: str


class ModelOut(BaseModel):
    name: str
    version: int
    precision: str
    sha256: str
    trained: bool
    metadata: dict


class ModelsResponse(BaseModel):
    name: str
    primary: str
    members: list[ModelOut]
    provider: str
    batching: dict
