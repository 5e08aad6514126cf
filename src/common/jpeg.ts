import sharp from 'sharp';

/** Packed RGB24 pixels, rows top to bottom (an evidence canvas, a decoded frame). */
interface Rgb24 {
  width: number;
  height: number;
  data: Uint8Array;
}

/** Encodes an RGB24 image as baseline JPEG (quality 1–100, default 80). */
export async function encodeJpeg(img: Rgb24, quality = 80): Promise<Buffer> {
  return sharp(img.data, { raw: { width: img.width, height: img.height, channels: 3 } })
    .jpeg({ quality, chromaSubsampling: '4:2:0' })
    .toBuffer();
}

/**
 * Decodes an image file (JPEG, PNG, WebP, TIFF, GIF, AVIF — whatever sharp's libvips reads) to RGB24,
 * turned upright per its EXIF orientation and with any alpha dropped, so pixel boxes match what a viewer shows;
 * stretched to `size` when given.
 */
export async function decodeImage(
  file: string,
  size?: { width: number; height: number },
): Promise<{ width: number; height: number; data: Buffer }> {
  const img = sharp(file, { autoOrient: true });
  // A stretch, like the frames ffmpeg scales to the detect size, so normalized zones land on the same spots.
  if (size) img.resize(size.width, size.height, { fit: 'fill' });
  const { data, info } = await img.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (info.channels !== 3) throw new Error(`${file}: decoded to ${info.channels} channels, expected 3`);
  return { width: info.width, height: info.height, data };
}
