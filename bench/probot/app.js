// Verify and route only: Probot checks the signature and calls this handler; nothing is
// stored or sent anywhere. `make bench` compares openase's accept rate with this app's.
export default (app) => {
  app.on("issues", async () => {});
};
