"""The live demo page (``sign-ctc-serve``): a local web server whose page streams camera or video frames
to the server, which tracks them with the extractor's MediaPipe tracker and recognizes them with the
streaming recognizer, one state per browser tab. Nothing in sign_ctc imports this package."""
