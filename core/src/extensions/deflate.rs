//! SKELETON: the shared raw-deflate engine.
