"""Text to speech providers for `type: "text"` inputs."""
