"""Image quality: full-reference PSNR/SSIM/MSE, no-reference NIQE and PIQE, and the metrics rules."""
