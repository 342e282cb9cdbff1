// The thumbnail an encrypted image carries (as the Python SDK: WebP, 320 px on the long
// side, no metadata), drawn on a canvas so it never leaves the browser unencrypted.

const LONG_SIDE = 320;

export interface Thumbnail {
  bytes: Uint8Array<ArrayBuffer>;
  width: number;
  height: number;
  sourceWidth: number;
  sourceHeight: number;
}

export async function makeThumbnail(file: Blob): Promise<Thumbnail> {
  // createImageBitmap applies the EXIF orientation, so width and height are as shown.
  let bitmap: ImageBitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error("This image cannot be read by the browser.");
  }
  try {
    const scale = Math.min(1, LONG_SIDE / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    canvas.getContext("2d")!.drawImage(bitmap, 0, 0, width, height);
    const blob = await new Promise<Blob | null>((resolve) => canvas.toBlob(resolve, "image/webp", 0.75));
    if (blob === null) throw new Error("The thumbnail could not be made.");
    return {
      bytes: new Uint8Array(await blob.arrayBuffer()),
      width,
      height,
      sourceWidth: bitmap.width,
      sourceHeight: bitmap.height,
    };
  } finally {
    bitmap.close();
  }
}
