from tests.train.conftest import chat_backbone  # noqa: F401  (shared session fixture)
