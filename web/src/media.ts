// Media: image parts fetched once, decrypted and hash-checked when encrypted, as object URLs.

import type { ChatClient } from "./chat";
import { decryptAttachment } from "./crypto/attachments";
import type { AttachmentPart } from "./model";

/** Object URLs of image parts, one fetch each; revoked when the client closes. */
export class MediaCache {
  readonly mediaUrls = new Map<string, Promise<string>>();

  constructor(private readonly client: ChatClient) {}

  /** An object URL of an image part (decrypted and hash-checked when encrypted). */
  mediaUrl(part: AttachmentPart | { media_id: string; plain: true }, variant: "thumb" | "full"): Promise<string> {
    const key = `${part.media_id}:${variant}`;
    let url = this.mediaUrls.get(key);
    if (url === undefined) {
      url = (async () => {
        if ("plain" in part) {
          const bytes = await this.client.api.bytes(`/v1/media/${part.media_id}/${variant === "thumb" ? "320" : "full"}`);
          return URL.createObjectURL(new Blob([bytes], { type: "image/webp" }));
        }
        const blob = await this.client.api.bytes(`/v1/media/${part.media_id}/blob`);
        const plain = await decryptAttachment(blob, part);
        return URL.createObjectURL(new Blob([plain], { type: part.content_type }));
      })();
      url.catch(() => this.mediaUrls.delete(key));
      this.mediaUrls.set(key, url);
    }
    return url;
  }

  revokeAll(): void {
    for (const url of this.mediaUrls.values()) void url.then((u) => URL.revokeObjectURL(u));
    this.mediaUrls.clear();
  }
}
