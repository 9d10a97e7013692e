"""The world the stack perceives: hand, tactile skin, objects, camera."""
