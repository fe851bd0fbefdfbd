//! SKELETON: frame codecs.
