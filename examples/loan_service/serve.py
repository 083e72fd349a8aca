"""The scoring API: predict approvals, and let the data-science team swap the model."""

from __future__ import annotations

import hashlib
import io

import joblib
import pandas as pd
import uvicorn
from fastapi import FastAPI, UploadFile
from pydantic import BaseModel

app = FastAPI(title="loan-approval")
state: dict[str, object] = {"model": joblib.load("models/model.joblib")}


class Application(BaseModel):
    age: int
    income: float
    loan_amount: float
    loan_term_months: int
    credit_score: int
    years_employed: int


@app.post("/predict")
def predict(application: Application) -> dict[str, object]:
    frame = pd.DataFrame([application.model_dump()])
    approved = int(state["model"].predict(frame)[0])  # type: ignore[attr-defined]
    return {"approved": bool(approved)}


@app.post("/admin/model")
async def replace_model(upload: UploadFile) -> dict[str, str]:
    payload = await upload.read()
    # Whoever can reach this endpoint runs code on the server: joblib.load unpickles.
    state["model"] = joblib.load(io.BytesIO(payload))
    return {"model": hashlib.md5(payload).hexdigest()}


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=8080)
